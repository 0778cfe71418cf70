//! `runtime schema register|list|show|check|config|delete`: a client of a
//! Confluent-compatible schema registry (the host's own at `http://127.0.0.1:8081` by
//! default, or any other by `--registry`).

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use rill_runtime::schema::SchemaType;
use rill_runtime::schema::client::{Reference, RegistryClient, encode};

/// Where the registry is: shared by `schema` and `consume --decode`.
#[derive(Args, Debug, Clone)]
pub struct RegistryArg {
    /// The schema registry's URL.
    #[arg(
        long = "registry",
        env = "RILL_SCHEMA_REGISTRY",
        default_value = "http://127.0.0.1:8081"
    )]
    pub url: String,
}

#[derive(Args, Debug)]
pub struct SchemaArgs {
    #[command(flatten)]
    registry: RegistryArg,
    #[command(subcommand)]
    command: SchemaCommand,
}

#[derive(Subcommand, Debug)]
enum SchemaCommand {
    /// Register a schema under a subject (or find it registered); prints its id and version.
    Register {
        /// The subject, such as orders-value.
        subject: String,
        #[command(flatten)]
        schema: SchemaFile,
    },
    /// List subjects, or the versions of one.
    List {
        /// A subject whose versions to list.
        subject: Option<String>,
    },
    /// Show a subject's version (latest by default), or a schema by id.
    Show {
        /// The subject.
        #[arg(required_unless_present = "id", conflicts_with = "id")]
        subject: Option<String>,
        /// A version number or `latest`.
        #[arg(default_value = "latest")]
        version: String,
        /// Show the schema with this global id instead.
        #[arg(long)]
        id: Option<u32>,
    },
    /// Check whether a schema is compatible with a subject's version (latest by default)
    /// under the subject's compatibility level; exits non-zero when it is not.
    Check {
        /// The subject.
        subject: String,
        #[command(flatten)]
        schema: SchemaFile,
        /// The version to check against: a number or `latest`.
        #[arg(long, default_value = "latest")]
        version: String,
    },
    /// Show the compatibility level, global or of a subject, or set it with --set.
    Config {
        /// The subject; the global level when absent.
        subject: Option<String>,
        /// BACKWARD, BACKWARD_TRANSITIVE, FORWARD, FORWARD_TRANSITIVE, FULL,
        /// FULL_TRANSITIVE or NONE.
        #[arg(long)]
        set: Option<String>,
    },
    /// Delete a subject, or one version of it (soft: ids keep resolving); --permanent also
    /// removes it for good.
    Delete {
        /// The subject.
        subject: String,
        /// A version number or `latest`; the whole subject when absent.
        version: Option<String>,
        /// Delete permanently (after the soft delete).
        #[arg(long)]
        permanent: bool,
    },
}

/// A schema to send: its file, type and references.
#[derive(Args, Debug)]
struct SchemaFile {
    /// The schema's file (`-` for stdin).
    file: String,
    /// avro, json or protobuf; from the file's extension when absent (.avsc, .json,
    /// .proto), else avro.
    #[arg(long = "type", short = 't')]
    schema_type: Option<SchemaType>,
    /// A schema it refers to: NAME=SUBJECT:VERSION (repeatable).
    #[arg(long = "reference", value_parser = parse_reference)]
    references: Vec<Reference>,
}

impl SchemaFile {
    /// The request body the registry's version and compatibility routes take.
    fn body(&self) -> anyhow::Result<Value> {
        let text = if self.file == "-" {
            std::io::read_to_string(std::io::stdin()).context("reading the schema from stdin")?
        } else {
            std::fs::read_to_string(&self.file)
                .with_context(|| format!("reading the schema file {}", self.file))?
        };
        let schema_type = self.schema_type.unwrap_or_else(|| {
            match std::path::Path::new(&self.file)
                .extension()
                .and_then(|e| e.to_str())
            {
                Some("proto") => SchemaType::Protobuf,
                Some("json") => SchemaType::Json,
                _ => SchemaType::Avro,
            }
        });
        let mut body = json!({ "schema": text });
        if schema_type != SchemaType::Avro {
            body["schemaType"] = json!(schema_type.as_str());
        }
        if !self.references.is_empty() {
            body["references"] = serde_json::to_value(&self.references)?;
        }
        Ok(body)
    }
}

/// Parses `NAME=SUBJECT:VERSION`.
fn parse_reference(s: &str) -> Result<Reference, String> {
    let bad = || format!("invalid reference '{s}': expected NAME=SUBJECT:VERSION");
    let (name, rest) = s.split_once('=').ok_or_else(bad)?;
    let (subject, version) = rest.rsplit_once(':').ok_or_else(bad)?;
    let version = version.parse().map_err(|_| bad())?;
    if name.is_empty() || subject.is_empty() {
        return Err(bad());
    }
    Ok(Reference {
        name: name.into(),
        subject: subject.into(),
        version,
    })
}

/// A version argument: a positive number or `latest` (`-1` is the registry's latest too).
fn version_path(v: &str) -> anyhow::Result<String> {
    match v {
        "latest" | "-1" => Ok("latest".into()),
        n => match n.parse::<i32>() {
            Ok(n) if n > 0 => Ok(n.to_string()),
            _ => bail!("invalid version '{v}': expected a positive number or latest"),
        },
    }
}

pub fn run(args: SchemaArgs) -> anyhow::Result<()> {
    let registry = RegistryClient::new(&args.registry.url);
    let r = &registry;
    match args.command {
        SchemaCommand::Register { subject, schema } => {
            let s = encode(&subject);
            let body = schema.body()?;
            let registered = r.post(&format!("/subjects/{s}/versions"), &body)?;
            let id = registered.get("id").and_then(Value::as_u64);
            // Registration answers the id; a lookup of the same schema gives its version.
            let version = match registered.get("version").and_then(Value::as_i64) {
                Some(v) => Some(v),
                None => r
                    .post(&format!("/subjects/{s}"), &body)
                    .ok()
                    .and_then(|v| v.get("version").and_then(Value::as_i64)),
            };
            let id = id.context("the registry answered no id")?;
            match version {
                Some(v) => outln!("registered {subject} version {v} id {id}")?,
                None => outln!("registered {subject} id {id}")?,
            }
        }
        SchemaCommand::List { subject: None } => {
            let subjects: Vec<String> = serde_json::from_value(r.get("/subjects")?)?;
            for s in subjects {
                outln!("{s}")?;
            }
        }
        SchemaCommand::List {
            subject: Some(subject),
        } => {
            let versions: Vec<i64> = serde_json::from_value(
                r.get(&format!("/subjects/{}/versions", encode(&subject)))?,
            )?;
            for v in versions {
                outln!("{v}")?;
            }
        }
        SchemaCommand::Show {
            id: Some(id),
            subject: _,
            version: _,
        } => {
            let v = r.get(&format!("/schemas/ids/{id}"))?;
            outln!("id {id} type {}", schema_type(&v))?;
            print_schema(&v)?;
        }
        SchemaCommand::Show {
            subject, version, ..
        } => {
            let subject = subject.context("give a subject or --id")?;
            let v = r.get(&format!(
                "/subjects/{}/versions/{}",
                encode(&subject),
                version_path(&version)?
            ))?;
            outln!(
                "subject {subject} version {} id {} type {}",
                v.get("version").unwrap_or(&Value::Null),
                v.get("id").unwrap_or(&Value::Null),
                schema_type(&v)
            )?;
            print_schema(&v)?;
        }
        SchemaCommand::Check {
            subject,
            schema,
            version,
        } => {
            let path = format!(
                "/compatibility/subjects/{}/versions/{}?verbose=true",
                encode(&subject),
                version_path(&version)?
            );
            let v = r.post(&path, &schema.body()?)?;
            let compatible = v
                .get("is_compatible")
                .and_then(Value::as_bool)
                .context("the registry's answer has no is_compatible")?;
            if compatible {
                outln!("compatible with {subject} version {version}")?;
            } else {
                for m in v
                    .get("messages")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    outln!(
                        "{}",
                        m.as_str().map_or_else(|| m.to_string(), str::to_owned)
                    )?;
                }
                bail!("the schema is not compatible with {subject} version {version}");
            }
        }
        SchemaCommand::Config { subject, set } => {
            let path = match &subject {
                Some(s) => format!("/config/{}", encode(s)),
                None => "/config".to_string(),
            };
            match set {
                Some(level) => {
                    let level = level.to_ascii_uppercase();
                    let v = r.put(&path, &json!({ "compatibility": level }))?;
                    let now = v
                        .get("compatibility")
                        .and_then(Value::as_str)
                        .unwrap_or(&level);
                    outln!("{}: {now}", subject.as_deref().unwrap_or("global"))?;
                }
                None => {
                    let path = match &subject {
                        Some(_) => format!("{path}?defaultToGlobal=true"),
                        None => path,
                    };
                    let v = r.get(&path)?;
                    let level = v
                        .get("compatibilityLevel")
                        .or_else(|| v.get("compatibility"))
                        .and_then(Value::as_str)
                        .context("the registry's answer has no compatibility level")?;
                    outln!("{}: {level}", subject.as_deref().unwrap_or("global"))?;
                }
            }
        }
        SchemaCommand::Delete {
            subject,
            version,
            permanent,
        } => {
            let mut path = format!("/subjects/{}", encode(&subject));
            if let Some(v) = &version {
                path = format!("{path}/versions/{}", version_path(v)?);
            }
            // A permanent delete needs the soft one first; one already soft-deleted is fine.
            let soft = r.delete(&path);
            let deleted = match (soft, permanent) {
                (Ok(v), false) => v,
                (Ok(_), true) => r.delete(&format!("{path}?permanent=true"))?,
                (
                    Err(rill_runtime::schema::SourceError::Refused {
                        code: 40404 | 40406,
                        ..
                    }),
                    true,
                ) => r.delete(&format!("{path}?permanent=true"))?,
                (Err(e), _) => return Err(e.into()),
            };
            let how = if permanent { "permanently" } else { "soft" };
            match version {
                Some(_) => outln!("deleted {subject} version {deleted} ({how})")?,
                None => outln!("deleted {subject} versions {deleted} ({how})")?,
            }
        }
    }
    Ok(())
}

fn schema_type(v: &Value) -> &str {
    v.get("schemaType")
        .and_then(Value::as_str)
        .unwrap_or("AVRO")
}

/// Prints the schema text, pretty when it is JSON (Avro, JSON Schema), then its references.
fn print_schema(v: &Value) -> anyhow::Result<()> {
    let text = v.get("schema").and_then(Value::as_str).unwrap_or_default();
    match serde_json::from_str::<Value>(text) {
        Ok(j) => outln!("{}", serde_json::to_string_pretty(&j)?)?,
        Err(_) => outln!("{}", text.trim_end())?,
    }
    for r in v
        .get("references")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        outln!(
            "reference {} = {}:{}",
            r.get("name").and_then(Value::as_str).unwrap_or("?"),
            r.get("subject").and_then(Value::as_str).unwrap_or("?"),
            r.get("version").unwrap_or(&Value::Null)
        )?;
    }
    Ok(())
}
