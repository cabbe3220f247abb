//! `quicrpc certs`: a development CA and a server certificate it signed, as PEM files.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use clap::Args;

use crate::error::CliError;

/// `quicrpc certs`.
#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  quicrpc certs --out dev-certs
  quicrpc certs --out dev-certs --name my-host.local --name 10.0.0.7 --force")]
pub(crate) struct CertsArgs {
    /// The directory to write ca.pem, cert.pem and key.pem into (created if missing).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,

    /// A DNS name or IP address the server certificate is valid for. Repeatable.
    #[arg(long = "name", value_name = "NAME", default_values_t = ["localhost".to_owned(), "127.0.0.1".to_owned()])]
    names: Vec<String>,

    /// Overwrites files that already exist.
    #[arg(long)]
    force: bool,
}

const CA: &str = "ca.pem";
const CERT: &str = "cert.pem";
const KEY: &str = "key.pem";

/// Runs `quicrpc certs`.
pub(crate) fn run(args: &CertsArgs) -> Result<(), CliError> {
    let cant = |what: &Path, e: &dyn std::fmt::Display| {
        CliError::CantCreate(format!("writing {}: {e}", what.display()))
    };
    let paths = [CA, CERT, KEY].map(|name| args.out.join(name));
    // `symlink_metadata`, not `exists`: a link is there even when what it points at is not.
    if !args.force
        && let Some(existing) = paths.iter().find(|p| std::fs::symlink_metadata(p).is_ok())
    {
        return Err(CliError::CantCreate(format!(
            "{} exists already; pass --force to replace it",
            existing.display()
        )));
    }
    let generated = quicrpc::tls::SelfSigned::new(args.names.iter().cloned())
        .map_err(|e| CliError::Usage(format!("making the certificate: {e}")))?;
    std::fs::create_dir_all(&args.out).map_err(|e| cant(&args.out, &e))?;
    let [ca, cert, key] = &paths;
    write(ca, generated.ca_pem(), false).map_err(|e| cant(ca, &e))?;
    write(cert, generated.cert_pem(), false).map_err(|e| cant(cert, &e))?;
    write(key, generated.key_pem(), true).map_err(|e| cant(key, &e))?;

    let names = args.names.join(", ");
    println!(
        "\
wrote {ca}    the development CA's certificate: what clients trust
wrote {cert}  the server certificate for {names}, signed by that CA
wrote {key}   the server certificate's private key (PKCS#8): keep it private

Serve with it (Rust):
    let identity = quicrpc::tls::Identity::from_pem(
        std::fs::read(\"{cert}\")?,
        std::fs::read(\"{key}\")?,
    )?;
    let server = quicrpc::Server::builder().identity(identity) /* .add_service(..) */;

Call with it:
    quicrpc call --ca {ca} localhost:PORT package.Service/Method -d '{{}}'
    (a Rust client: ChannelBuilder::ca_certificate(Certificate::from_pem(..)))

For development only. The CA's own private key is not kept, so it can sign nothing else;
run this again for other names.",
        ca = ca.display(),
        cert = cert.display(),
        key = key.display(),
    );
    Ok(())
}

/// Writes `text` to `path`; a private file is readable by its owner only (on Unix).
///
/// Through a new file beside it, renamed over `path`: the new file is created afresh
/// (never through a link, and with the mode given here, whatever an old file had), and
/// the rename replaces a link at `path` rather than writing where it points.
fn write(path: &Path, text: &str, private: bool) -> std::io::Result<()> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let fresh = path.with_file_name(format!(".{name}.{}.new", std::process::id()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    let written = (|| {
        let mut file = options.open(&fresh)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&fresh, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&fresh);
    }
    written
}
