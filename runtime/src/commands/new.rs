//! `runtime new NAME`: scaffold a handler crate that builds with `runtime build` and runs
//! with `runtime test` straight away.
//!
//! The crate depends on `rill-guest`, found in this order: `--sdk-path`; the `guest-sdk/`
//! of a Rill checkout enclosing the new crate; the checkout this `runtime` was built from,
//! if it still exists; else the crates.io version matching this binary.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// Scaffold a new handler crate.
#[derive(clap::Args, Debug)]
pub struct NewArgs {
    /// Name of the crate (and of its directory).
    pub name: String,
    /// Parent directory to create it in.
    #[arg(long, default_value = ".")]
    pub dir: PathBuf,
    /// Path of the rill-guest SDK to depend on.
    #[arg(long)]
    pub sdk_path: Option<PathBuf>,
}

/// Creates the crate and prints what to do next.
pub fn run(args: NewArgs) -> anyhow::Result<()> {
    let name = &args.name;
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        bail!("'{name}' is not a valid crate name (use letters, digits, '-' and '_')");
    }
    let dir = std::path::absolute(args.dir.join(name))?;
    if dir.exists() {
        bail!("{} already exists", dir.display());
    }
    let sdk = sdk_dependency(&dir, args.sdk_path.as_deref())?;
    std::fs::create_dir_all(dir.join("src"))
        .with_context(|| format!("creating {}", dir.display()))?;
    let files = [
        ("Cargo.toml", cargo_toml(name, &sdk)),
        ("src/lib.rs", LIB_RS.to_owned()),
        ("README.md", readme(name)),
        ("records.jsonl", RECORDS.to_owned()),
        (".gitignore", "/target\n".to_owned()),
    ];
    for (file, text) in files {
        std::fs::write(dir.join(file), text).with_context(|| format!("writing {file}"))?;
    }
    outln!("created {}", dir.display())?;
    outln!(
        "next:\n  cd {}\n  runtime build\n  runtime test target/wasm32-unknown-unknown/release/{}.wasm --input records.jsonl",
        dir.display(),
        name.replace('-', "_")
    )?;
    Ok(())
}

/// The `rill-guest = ...` dependency line.
fn sdk_dependency(crate_dir: &Path, explicit: Option<&Path>) -> anyhow::Result<String> {
    if let Some(p) = explicit {
        let p = std::path::absolute(p)?;
        if !p.join("Cargo.toml").exists() {
            bail!("--sdk-path {}: no Cargo.toml there", p.display());
        }
        return Ok(format!(
            "rill-guest = {{ path = {:?} }}",
            p.display().to_string()
        ));
    }
    let enclosing = crate_dir
        .ancestors()
        .skip(1)
        .map(|a| a.join("guest-sdk"))
        .find(|p| is_sdk(p));
    let built_from = Path::new(env!("CARGO_MANIFEST_DIR")).join("../guest-sdk");
    if let Some(p) = enclosing.or_else(|| is_sdk(&built_from).then_some(built_from)) {
        let p = p.canonicalize()?;
        return Ok(format!(
            "rill-guest = {{ path = {:?} }}",
            p.display().to_string()
        ));
    }
    Ok(format!("rill-guest = \"{}\"", env!("CARGO_PKG_VERSION")))
}

fn is_sdk(p: &Path) -> bool {
    std::fs::read_to_string(p.join("Cargo.toml")).is_ok_and(|t| t.contains("name = \"rill-guest\""))
}

fn cargo_toml(name: &str, sdk: &str) -> String {
    format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"
publish = false

# A handler is a cdylib: `runtime build` turns it into {under}.wasm.
[lib]
crate-type = ["cdylib"]

[dependencies]
{sdk}
serde = {{ version = "1", features = ["derive"] }}
serde_json = "1"

# Its own workspace, so it builds on its own even inside another one.
[workspace]

# Small, fast modules; a panic aborts (the host reports it as a trap).
[profile.release]
opt-level = 3
lto = true
codegen-units = 1
panic = "abort"
strip = true
"#,
        under = name.replace('-', "_"),
    )
}

const LIB_RS: &str = r##"//! A Rill handler: for each order, emit an email request to topic `emails`.

use rill_guest::prelude::*;

#[derive(Deserialize)]
struct Order {
    order_id: u64,
    email: String,
}

fn on_record(rec: &Record<'_>, ctx: &mut Context) -> Result<()> {
    let order: Order = rec.json()?;
    ctx.log_info(format_args!("order {} from partition {}", order.order_id, rec.partition()));
    ctx.emit_json("emails", rec.key(), &json!({"to": order.email, "template": "order_confirmation"}))?;
    Ok(())
}

rill_guest::export_handler!(on_record);

#[cfg(test)]
mod tests {
    use rill_guest::testing::{self, BatchBuilder};

    #[test]
    fn emits_one_email_per_order() {
        let mut batch = BatchBuilder::new(0);
        batch.push(Some(b"c1"), Some(br#"{"order_id":1,"email":"a@example.com"}"#));
        let out = testing::run(&batch.finish(), 0, super::on_record);
        assert!(out.failure.is_none());
        assert_eq!(out.emits.len(), 1);
        assert_eq!(out.emits[0].topic, "emails");
    }
}
"##;

const RECORDS: &str = r#"{"key":"c1","value":{"order_id":1,"email":"ada@example.com"}}
{"order_id":2,"email":"bob@example.com"}
"#;

fn readme(name: &str) -> String {
    format!(
        "# {name}\n\nA Rill handler.\n\n```sh\ncargo test                # unit tests, natively\nruntime build             # -> target/wasm32-unknown-unknown/release/{under}.wasm\nruntime test target/wasm32-unknown-unknown/release/{under}.wasm --input records.jsonl\nruntime deploy ...        # on a running host\n```\n\nThe handler API is documented in the `rill-guest` crate; the ABI in Rill's `docs/abi.md`.\n",
        under = name.replace('-', "_")
    )
}
