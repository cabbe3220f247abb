//! What can go wrong, and the exit code each failure gives.
//!
//! A call that ends with a status exits with the status's code (0 for OK, 1 to 16 as gRPC
//! numbers them). Failures before any status, on this side, have codes above gRPC's range,
//! from the BSD `sysexits.h` family where one fits.

use std::fmt;

use quicrpc_schema::escape;

/// Exit code: bad command-line arguments or option values (an address, a header, a
/// duration). `EX_USAGE`.
pub(crate) const EXIT_USAGE: u8 = 64;
/// Exit code: input data that does not fit (JSON that is not the request message, a `.proto`
/// that does not compile, a server's descriptors that do not resolve). `EX_DATAERR`.
pub(crate) const EXIT_DATA: u8 = 65;
/// Exit code: a file could not be read (`-d @file`, `--proto`, `--ca`). `EX_NOINPUT`.
pub(crate) const EXIT_NO_INPUT: u8 = 66;
/// Exit code: the service, method or symbol is not in the schema (reflection or `--proto`).
pub(crate) const EXIT_UNKNOWN_NAME: u8 = 67;
/// Exit code: a file could not be written (`certs`, or standard output). `EX_CANTCREAT`.
pub(crate) const EXIT_CANT_CREATE: u8 = 73;

/// A failure that ends the command.
#[derive(Debug)]
pub(crate) enum CliError {
    /// See [`EXIT_USAGE`].
    Usage(String),
    /// See [`EXIT_DATA`].
    Data(String),
    /// See [`EXIT_NO_INPUT`].
    NoInput(String),
    /// See [`EXIT_UNKNOWN_NAME`].
    UnknownName(String),
    /// See [`EXIT_CANT_CREATE`].
    CantCreate(String),
    /// The server could not be reached, or its TLS handshake failed: exits with
    /// UNAVAILABLE's code, as a call on that connection would have ended.
    Unreachable(String),
    /// A gRPC status: the call's, or UNAVAILABLE when the server cannot be reached.
    Status(tonic::Status),
}

impl CliError {
    /// The process exit code for this failure.
    pub(crate) fn exit_code(&self) -> u8 {
        match self {
            Self::Usage(_) => EXIT_USAGE,
            Self::Data(_) => EXIT_DATA,
            Self::NoInput(_) => EXIT_NO_INPUT,
            Self::UnknownName(_) => EXIT_UNKNOWN_NAME,
            Self::CantCreate(_) => EXIT_CANT_CREATE,
            Self::Unreachable(_) => status_exit_code(tonic::Code::Unavailable),
            Self::Status(status) => status_exit_code(status.code()),
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Usage(m)
            | Self::Data(m)
            | Self::NoInput(m)
            | Self::UnknownName(m)
            | Self::CantCreate(m)
            | Self::Unreachable(m) => f.write_str(m),
            Self::Status(status) => write_status(f, status),
        }
    }
}

impl From<quicrpc_schema::Error> for CliError {
    fn from(error: quicrpc_schema::Error) -> Self {
        use quicrpc_schema::Error;
        match error {
            Error::BadMethodPath(m) => Self::Usage(m),
            Error::NoSuchFile(m) => Self::NoInput(m),
            Error::BadSchema(m) => Self::Data(m),
            Error::UnknownName(m) => Self::UnknownName(m),
            Error::Status(status) => Self::Status(status),
            // Error is non-exhaustive: a kind added later reads as bad input until mapped.
            other => Self::Data(other.to_string()),
        }
    }
}

impl From<tonic::Status> for CliError {
    fn from(status: tonic::Status) -> Self {
        Self::Status(status)
    }
}

/// The exit code for a gRPC status code: its number.
pub(crate) fn status_exit_code(code: tonic::Code) -> u8 {
    // gRPC codes are 0..=16.
    u8::try_from(code as i32).unwrap_or(2)
}

/// A status code's canonical name, as gRPC spells it: `NOT_FOUND`.
pub(crate) fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}

/// `NOT_FOUND (5): no such thing`, or `OK (0)`. The message is the server's, so it is
/// escaped (see [`escape`]): one line, nothing a terminal acts on.
fn write_status(f: &mut fmt::Formatter<'_>, status: &tonic::Status) -> fmt::Result {
    let code = status.code();
    write!(f, "{} ({})", code_name(code), code as i32)?;
    if !status.message().is_empty() {
        write!(f, ": {}", escape(status.message()))?;
    }
    Ok(())
}
