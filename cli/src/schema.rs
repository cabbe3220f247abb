//! Where message types come from: `.proto` files compiled at run time (protox), or the
//! server's reflection service (grpc.reflection.v1), asked only for what is needed.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use prost::Message as _;
use prost_reflect::{
    DescriptorPool, EnumDescriptor, MessageDescriptor, MethodDescriptor, ServiceDescriptor,
};
use quicrpc::Channel;
use tonic::{Code, Status};
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
use tonic_reflection::pb::v1::{ErrorResponse, ServerReflectionRequest};

use crate::error::CliError;
use crate::escape::escape;

/// The most file descriptors the server's reflection service may send in one run: far more
/// than a real service's imports, and a bound on a server that answers each request for an
/// import with a file that imports yet another one.
const MAX_REFLECTED_FILES: usize = 1_000;

/// Files the server sent, not yet in the pool: each one's encoding and the files it imports,
/// by name.
type PendingFiles = HashMap<String, (Vec<u8>, Vec<String>)>;

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
}

/// A named thing in a schema, for `describe`.
#[derive(Debug)]
pub(crate) enum Symbol {
    Service(ServiceDescriptor),
    Method(MethodDescriptor),
    Message(MessageDescriptor),
    Enum(EnumDescriptor),
}

/// The descriptors known so far, and the server to ask for more (none with `--proto`).
#[derive(Debug)]
pub(crate) struct Schema {
    pool: DescriptorPool,
    reflection: Option<ServerReflectionClient<Channel>>,
    /// How long the reflection service has to answer each request.
    answer_within: Duration,
    /// File descriptors the reflection service has sent so far; see [`MAX_REFLECTED_FILES`].
    reflected_files: usize,
}

impl Schema {
    /// Compiles the `--proto` files, or, without any, asks `channel`'s reflection service,
    /// which has `answer_within` to answer each request.
    pub(crate) fn open(
        args: &SchemaArgs,
        channel: Option<Channel>,
        answer_within: Duration,
    ) -> Result<Self, CliError> {
        if args.has_protos() {
            return Ok(Self {
                pool: compile(args)?,
                reflection: None,
                answer_within,
                reflected_files: 0,
            });
        }
        let channel = channel.ok_or_else(|| {
            CliError::Usage("without --proto, a server to ask (reflection) is needed".into())
        })?;
        Ok(Self {
            pool: DescriptorPool::new(),
            reflection: Some(ServerReflectionClient::new(channel)),
            answer_within,
            reflected_files: 0,
        })
    }

    /// Every service's full name, sorted.
    pub(crate) async fn services(&mut self) -> Result<Vec<String>, CliError> {
        let mut names: Vec<String> = match self.reflection.is_some() {
            true => match self
                .ask(MessageRequest::ListServices(String::new()))
                .await?
            {
                MessageResponse::ListServicesResponse(list) => {
                    list.service.into_iter().map(|s| s.name).collect()
                }
                other => return Err(unexpected(&other)),
            },
            false => self
                .pool
                .services()
                .map(|s| s.full_name().to_owned())
                .collect(),
        };
        names.sort();
        Ok(names)
    }

    /// A service by full name; the error lists the services there are.
    pub(crate) async fn service(&mut self, name: &str) -> Result<ServiceDescriptor, CliError> {
        let name = name.trim_start_matches('.');
        if self.load(name).await?
            && let Some(service) = self.pool.get_service_by_name(name)
        {
            return Ok(service);
        }
        let known = self.services().await?;
        Err(CliError::UnknownName(format!(
            "unknown service `{name}`{}",
            suggestions(name, &known, "services")
        )))
    }

    /// A method from `package.Service/Method` (or `package.Service.Method`).
    pub(crate) async fn method(&mut self, path: &str) -> Result<MethodDescriptor, CliError> {
        let (service, method) = split_method(path)?;
        let service = self.service(service).await?;
        if let Some(found) = service.methods().find(|m| m.name() == method) {
            return Ok(found);
        }
        let known: Vec<String> = service.methods().map(|m| m.name().to_owned()).collect();
        Err(CliError::UnknownName(format!(
            "service `{}` has no method `{method}`{}",
            service.full_name(),
            suggestions(method, &known, "methods")
        )))
    }

    /// A service, method, message or enum by full name (a method also as
    /// `package.Service/Method`).
    pub(crate) async fn symbol(&mut self, name: &str) -> Result<Symbol, CliError> {
        let name = name.trim_start_matches('.').replace('/', ".");
        if self.load(&name).await? {
            if let Some(service) = self.pool.get_service_by_name(&name) {
                return Ok(Symbol::Service(service));
            }
            if let Some(message) = self.pool.get_message_by_name(&name) {
                return Ok(Symbol::Message(message));
            }
            if let Some(e) = self.pool.get_enum_by_name(&name) {
                return Ok(Symbol::Enum(e));
            }
            if let Some((service, method)) = name.rsplit_once('.')
                && let Some(service) = self.pool.get_service_by_name(service)
                && let Some(method) = service.methods().find(|m| m.name() == method)
            {
                return Ok(Symbol::Method(method));
            }
        }
        let known = self.services().await?;
        Err(CliError::UnknownName(format!(
            "unknown symbol `{name}`{}",
            suggestions(&name, &known, "services")
        )))
    }

    /// Makes sure the file defining `symbol` is in the pool, asking the server if there is
    /// one. `false`: the server does not know it (with `--proto`: always `true`, the pool is
    /// all there is).
    async fn load(&mut self, symbol: &str) -> Result<bool, CliError> {
        if self.reflection.is_none() {
            return Ok(true);
        }
        let request = MessageRequest::FileContainingSymbol(symbol.to_owned());
        match self.ask(request).await? {
            MessageResponse::FileDescriptorResponse(files) => {
                self.add_files(files.file_descriptor_proto).await?;
                Ok(true)
            }
            MessageResponse::ErrorResponse(e) if e.error_code == Code::NotFound as i32 => Ok(false),
            other => Err(unexpected(&other)),
        }
    }

    /// Adds encoded file descriptors from the server, with whatever files they import that
    /// the pool lacks (asked for by name), dependencies first. Each answer must hold the
    /// file asked for, and at most [`MAX_REFLECTED_FILES`] files come in all: a server that
    /// answers with other files, or with ever more imports, cannot keep the tool asking.
    async fn add_files(&mut self, files: Vec<Vec<u8>>) -> Result<(), CliError> {
        let mut pending = PendingFiles::new();
        self.receive_files(files, &mut pending)?;
        loop {
            let missing: BTreeSet<String> = pending
                .values()
                .flat_map(|(_, deps)| deps)
                .filter(|d| !pending.contains_key(*d) && self.pool.get_file_by_name(d).is_none())
                .cloned()
                .collect();
            if missing.is_empty() {
                break;
            }
            for name in missing {
                let files = match self
                    .ask(MessageRequest::FileByFilename(name.clone()))
                    .await?
                {
                    MessageResponse::FileDescriptorResponse(more) => more.file_descriptor_proto,
                    _ => {
                        return Err(CliError::Data(format!(
                            "the server's descriptors import {}, which it does not serve",
                            escape(&name)
                        )));
                    }
                };
                let received = self.receive_files(files, &mut pending)?;
                if !received.contains(&name) {
                    let sent: Vec<_> = received.iter().map(|n| escape(n)).collect();
                    return Err(CliError::Data(format!(
                        "the server's reflection service, asked for {}, sent {} instead",
                        escape(&name),
                        match sent.is_empty() {
                            true => "no file".to_owned(),
                            false => sent.join(", "),
                        }
                    )));
                }
            }
        }
        // Dependencies first; decoding (rather than prost-types) keeps custom options such
        // as (quicrpc.priority).
        while !pending.is_empty() {
            let ready: Vec<String> = pending
                .iter()
                .filter(|(_, (_, deps))| {
                    deps.iter().all(|d| self.pool.get_file_by_name(d).is_some())
                })
                .map(|(name, _)| name.clone())
                .collect();
            if ready.is_empty() {
                return Err(CliError::Data(
                    "the server's file descriptors import each other in a cycle".into(),
                ));
            }
            for name in ready {
                if let Some((bytes, _)) = pending.remove(&name)
                    && self.pool.get_file_by_name(&name).is_none()
                {
                    self.pool
                        .decode_file_descriptor_proto(bytes.as_slice())
                        .map_err(|e| {
                            CliError::Data(format!(
                                "the server's descriptor of {}: {e}",
                                escape(&name)
                            ))
                        })?;
                }
            }
        }
        Ok(())
    }

    /// Decodes files the reflection service sent into `pending`, counting them against
    /// [`MAX_REFLECTED_FILES`]. Returns their names.
    fn receive_files(
        &mut self,
        files: Vec<Vec<u8>>,
        pending: &mut PendingFiles,
    ) -> Result<Vec<String>, CliError> {
        self.reflected_files = self.reflected_files.saturating_add(files.len());
        if self.reflected_files > MAX_REFLECTED_FILES {
            return Err(CliError::Data(format!(
                "the server's reflection service sent more than {MAX_REFLECTED_FILES} file \
                 descriptors, as if its imports never end; pass the .proto files with \
                 --proto instead"
            )));
        }
        let mut names = Vec::with_capacity(files.len());
        for bytes in files {
            let file = prost_types::FileDescriptorProto::decode(bytes.as_slice()).map_err(|e| {
                CliError::Data(format!("the server sent a bad file descriptor: {e}"))
            })?;
            names.push(file.name().to_owned());
            pending.insert(file.name().to_owned(), (bytes, file.dependency));
        }
        Ok(names)
    }

    /// One request to the reflection service, one response.
    async fn ask(&mut self, request: MessageRequest) -> Result<MessageResponse, CliError> {
        let Some(client) = self.reflection.as_mut() else {
            return Err(CliError::Usage("no server to ask".into()));
        };
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(request),
        };
        let mut request = tonic::Request::new(futures_util::stream::iter([request]));
        request.set_timeout(self.answer_within);
        let answer = async {
            let mut responses = client.server_reflection_info(request).await?.into_inner();
            responses.message().await
        };
        // The deadline goes to the server, and the channel keeps it too; a server that
        // ignores it is not waited for all the same.
        let late = || {
            Status::deadline_exceeded(format!(
                "the reflection service did not answer within {:?} (--connect-timeout)",
                self.answer_within
            ))
        };
        let answer = match tokio::time::timeout(self.answer_within, answer).await {
            Err(_) => Err(late()),
            Ok(Err(status)) if status.code() == Code::DeadlineExceeded => Err(late()),
            Ok(answer) => answer,
        };
        let response = match answer {
            Ok(response) => response,
            // tonic-reflection answers an unknown name with a status rather than an
            // ErrorResponse: the same thing.
            Err(status) if status.code() == Code::NotFound => {
                return Ok(MessageResponse::ErrorResponse(ErrorResponse {
                    error_code: Code::NotFound as i32,
                    error_message: status.message().to_owned(),
                }));
            }
            Err(status) => return Err(reflection_failed(status)),
        };
        let response = response.and_then(|r| r.message_response).ok_or_else(|| {
            CliError::Status(Status::internal("the reflection service answered nothing"))
        })?;
        Ok(response)
    }
}

/// Compiles `--proto` files with their imports.
fn compile(args: &SchemaArgs) -> Result<DescriptorPool, CliError> {
    let protos = args
        .protos
        .iter()
        .map(|path| find_proto(path, &args.import_paths))
        .collect::<Result<Vec<_>, _>>()?;
    let mut includes = args.import_paths.clone();
    if includes.is_empty() {
        for path in &protos {
            let dir = path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .map_or_else(|| PathBuf::from("."), PathBuf::from);
            if !includes.contains(&dir) {
                includes.push(dir);
            }
        }
    }
    let bad = |e: protox::Error| CliError::Data(format!("compiling --proto: {e}"));
    let mut compiler = protox::Compiler::new(&includes).map_err(bad)?;
    compiler.include_imports(true);
    compiler.open_files(&protos).map_err(bad)?;
    Ok(compiler.descriptor_pool())
}

/// Where a `--proto` name is: as protoc and grpcurl look, under each import path in turn,
/// then as a path from the working directory.
fn find_proto(name: &Path, import_paths: &[PathBuf]) -> Result<PathBuf, CliError> {
    let found = import_paths
        .iter()
        .map(|dir| dir.join(name))
        .chain(std::iter::once(name.to_path_buf()))
        .find(|path| path.is_file());
    found.ok_or_else(|| {
        let looked: Vec<String> = import_paths
            .iter()
            .map(|dir| dir.display().to_string())
            .collect();
        CliError::NoInput(match looked.is_empty() {
            true => format!("--proto {}: no such file", name.display()),
            false => format!(
                "--proto {}: no such file here or under --import-path {}",
                name.display(),
                looked.join(", ")
            ),
        })
    })
}

/// `package.Service/Method` (or `package.Service.Method`) into service and method.
pub(crate) fn split_method(path: &str) -> Result<(&str, &str), CliError> {
    let path = path.trim_start_matches('/');
    let split = path.rsplit_once('/').or_else(|| path.rsplit_once('.'));
    match split {
        Some((service, method)) if !service.is_empty() && !method.is_empty() => {
            Ok((service, method))
        }
        _ => Err(CliError::Usage(format!(
            "bad method {path:?}: expected package.Service/Method"
        ))),
    }
}

fn reflection_failed(status: Status) -> CliError {
    if status.code() == Code::Unimplemented {
        let mut message = "the server does not offer reflection (grpc.reflection.v1): pass \
                           the service's .proto with --proto FILE [--import-path DIR]"
            .to_owned();
        if !status.message().is_empty() {
            message.push_str(&format!(" ({})", status.message()));
        }
        return CliError::Status(Status::unimplemented(message));
    }
    let message = format!(
        "asking the server's reflection service: {}",
        status.message()
    );
    CliError::Status(Status::new(status.code(), message))
}

fn unexpected(response: &MessageResponse) -> CliError {
    let what = match response {
        MessageResponse::ErrorResponse(e) => {
            format!("error {}: {}", e.error_code, e.error_message)
        }
        _ => "an answer to another question".to_owned(),
    };
    CliError::Status(Status::internal(format!(
        "the reflection service answered {what}"
    )))
}

/// `; did you mean `x`? (services: a, b, c)` for an unknown `name` among `known`, which are
/// escaped: they may be the server's.
pub(crate) fn suggestions(name: &str, known: &[String], what: &str) -> String {
    let mut text = String::new();
    let lower = name.to_ascii_lowercase();
    let close = known
        .iter()
        .min_by_key(|k| distance(&lower, &k.to_ascii_lowercase()));
    if let Some(close) = close {
        let d = distance(&lower, &close.to_ascii_lowercase());
        if d <= (name.len() / 3).max(2) {
            text.push_str(&format!("; did you mean `{}`?", escape(close)));
        }
    }
    if known.is_empty() {
        text.push_str(&format!(" (there are no {what})"));
    } else {
        let known: Vec<_> = known.iter().map(|k| escape(k)).collect();
        text.push_str(&format!(" ({what}: {})", known.join(", ")));
    }
    text
}

/// Levenshtein distance, for suggestions.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitute = previous + usize::from(ca != *cb);
            previous = row[j + 1];
            row[j + 1] = substitute.min(previous + 1).min(row[j] + 1);
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_no_reflection_hint_carries_the_server_s_message_only_if_there_is_one() {
        use tonic::Status;

        let hint = |status| match super::reflection_failed(status) {
            crate::error::CliError::Status(status) => status.message().to_owned(),
            other => panic!("{other:?}"),
        };
        let bare = hint(Status::unimplemented(""));
        assert!(bare.ends_with("[--import-path DIR]"), "{bare}");
        let with = hint(Status::unimplemented("no such service"));
        assert!(
            with.ends_with("[--import-path DIR] (no such service)"),
            "{with}"
        );
    }

    use super::*;

    #[test]
    fn method_paths() {
        assert_eq!(split_method("a.B/C").unwrap(), ("a.B", "C"));
        assert_eq!(split_method("/a.B/C").unwrap(), ("a.B", "C"));
        assert_eq!(split_method("a.B.C").unwrap(), ("a.B", "C"));
        for bad in ["", "Method", "a.B/", "/C"] {
            assert!(split_method(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn suggests_the_closest_name() {
        let known = vec!["Unary".to_owned(), "ServerStream".to_owned()];
        assert!(suggestions("Unray", &known, "methods").contains("did you mean `Unary`?"));
        assert!(!suggestions("Zzzzzzzzzz", &known, "methods").contains("did you mean"));
        assert_eq!(distance("kitten", "sitting"), 3);
    }
}
