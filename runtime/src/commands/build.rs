//! `runtime build [PATH]`: compile a handler crate to `.wasm` with whatever toolchain this
//! machine has, through the same script the repository uses (`scripts/wasm-build.sh`,
//! embedded in the binary so it works outside the repository too).

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, bail};

/// The toolchain script, as of this build of `runtime`.
const SCRIPT: &str = include_str!("../../../scripts/wasm-build.sh");

/// Compile a handler crate to .wasm.
#[derive(clap::Args, Debug)]
pub struct BuildArgs {
    /// The handler crate (a directory with Cargo.toml).
    #[arg(default_value = ".")]
    pub path: PathBuf,
    /// Wasm target: wasm32-unknown-unknown (core module) or wasm32-wasip1 (WASI).
    #[arg(long, default_value = "wasm32-unknown-unknown")]
    pub target: String,
    /// Cargo target dir (default: the crate's own `target/`).
    #[arg(long)]
    pub target_dir: Option<PathBuf>,
    /// First install what is missing (rustup targets, or Debian's rustc-web packages).
    #[arg(long)]
    pub setup: bool,
}

/// Builds the crate and prints the path of the `.wasm` file.
pub fn run(args: BuildArgs) -> anyhow::Result<()> {
    let wasm = build(&args)?;
    outln!("{}", wasm.display())?;
    Ok(())
}

/// Builds the crate at `args.path`; returns the `.wasm` path.
pub fn build(args: &BuildArgs) -> anyhow::Result<PathBuf> {
    let manifest = args.path.join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest)
        .with_context(|| format!("{} is not a crate (no Cargo.toml)", args.path.display()))?;
    let artifact =
        artifact_name(&text).with_context(|| format!("reading {}", manifest.display()))?;
    let target_dir = match &args.target_dir {
        Some(d) => d.clone(),
        None => args.path.join("target"),
    };
    let target_dir = std::path::absolute(&target_dir)?;
    let script = write_script()?;
    let mut cmd = Command::new("bash");
    cmd.arg(&script);
    if args.setup {
        cmd.arg("--setup");
    }
    cmd.args(["--target", &args.target, "--target-dir"])
        .arg(&target_dir)
        .args(["--", "--manifest-path"])
        .arg(&manifest);
    let status = cmd.status().context("cannot run bash")?;
    let _ = std::fs::remove_file(&script);
    if !status.success() {
        bail!(
            "wasm build failed ({status}); if the toolchain is missing, run `runtime build --setup`"
        );
    }
    let wasm = target_dir
        .join(&args.target)
        .join("release")
        .join(format!("{artifact}.wasm"));
    if !wasm.exists() {
        bail!(
            "build succeeded but {} is missing; is the crate a cdylib?",
            wasm.display()
        );
    }
    Ok(wasm)
}

/// The file stem cargo gives the cdylib: `[lib] name`, else the package name with `-` as `_`.
fn artifact_name(manifest: &str) -> anyhow::Result<String> {
    let doc: toml::Table = toml::from_str(manifest)?;
    let lib = doc
        .get("lib")
        .and_then(|l| l.get("name"))
        .and_then(|n| n.as_str());
    let pkg = doc
        .get("package")
        .and_then(|p| p.get("name"))
        .and_then(|n| n.as_str());
    match lib.or(pkg) {
        Some(n) => Ok(n.replace('-', "_")),
        None => bail!("no [package] name (a workspace? pass the handler crate's own directory)"),
    }
}

/// Writes the embedded script to a private temporary file.
fn write_script() -> anyhow::Result<PathBuf> {
    let path = std::env::temp_dir().join(format!("rill-wasm-build-{}.sh", std::process::id()));
    std::fs::write(&path, SCRIPT).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}
