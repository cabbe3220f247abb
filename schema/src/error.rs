//! What can go wrong when finding a schema or a message type in it.

/// A failure to find a service, method or message type, or to build a schema.
///
/// Each message is complete and safe to print: what came from the server is escaped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A method path that is not `package.Service/Method`.
    #[error("{0}")]
    BadMethodPath(String),
    /// A `.proto` file that is not where it was looked for.
    #[error("{0}")]
    NoSuchFile(String),
    /// `.proto` files that do not compile, or descriptors from the server's reflection
    /// service that do not resolve (a bad encoding, a missing import, a cycle, too many).
    #[error("{0}")]
    BadSchema(String),
    /// A service, method or symbol that the schema lacks; close names are suggested.
    #[error("{0}")]
    UnknownName(String),
    /// The reflection service could not be asked, or answered with a status: UNIMPLEMENTED
    /// where the server offers none (with a hint at passing `.proto` files instead),
    /// DEADLINE_EXCEEDED where it did not answer in time.
    #[error("{}", .0.message())]
    Status(tonic::Status),
}
