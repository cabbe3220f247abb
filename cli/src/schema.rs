//! Where message types come from: `--proto` files compiled at run time, or the server's
//! reflection service (the `quicrpc-schema` crate does both).

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use quicrpc::Channel;
use quicrpc_schema::{OptionNames, Schema};

use crate::error::CliError;

/// The options' names, for the schema's error messages.
const NAMES: OptionNames = OptionNames {
    protos: "--proto",
    import_paths: "--import-path",
    timeout: "--connect-timeout",
};

/// `--proto` and `--import-path`.
#[derive(Clone, Debug, Args)]
pub(crate) struct SchemaArgs {
    /// Takes message types from this .proto file (compiled here, no protoc needed) instead
    /// of asking the server through reflection. Looked up under each --import-path, as
    /// protoc does, then from the working directory. Repeatable.
    #[arg(long = "proto", value_name = "FILE")]
    pub(crate) protos: Vec<PathBuf>,

    /// A directory where --proto files and their imports are found. Repeatable. Default: the
    /// directory of each --proto file.
    #[arg(long = "import-path", short = 'I', value_name = "DIR")]
    pub(crate) import_paths: Vec<PathBuf>,
}

impl SchemaArgs {
    /// Whether types come from `--proto` files (no connection needed to know them).
    pub(crate) fn has_protos(&self) -> bool {
        !self.protos.is_empty()
    }

    /// Compiles the `--proto` files, or, without any, asks `channel`'s reflection service,
    /// which has `answer_within` to answer each request.
    pub(crate) fn open(
        &self,
        channel: Option<Channel>,
        answer_within: Duration,
    ) -> Result<Schema, CliError> {
        if self.has_protos() {
            return Ok(Schema::from_protos(
                &self.protos,
                &self.import_paths,
                NAMES,
            )?);
        }
        let channel = channel.ok_or_else(|| {
            CliError::Usage("without --proto, a server to ask (reflection) is needed".into())
        })?;
        Ok(Schema::from_reflection(channel, answer_within, NAMES))
    }
}
