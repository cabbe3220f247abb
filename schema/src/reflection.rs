//! Asking the server's reflection service (grpc.reflection.v1) for descriptors, only for
//! what is needed.

use std::collections::{BTreeSet, HashMap};

use prost::Message as _;
use tonic::{Code, Status};
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
use tonic_reflection::pb::v1::{ErrorResponse, ServerReflectionRequest};

use crate::error::Error;
use crate::escape::escape;
use crate::schema::{OptionNames, Schema};

/// The most file descriptors the server's reflection service may send to one [`Schema`]:
/// far more than a real service's imports, and a bound on a server that answers each
/// request for an import with a file that imports yet another one.
pub(crate) const MAX_REFLECTED_FILES: usize = 1_000;

/// Files the server sent, not yet in the pool: each one's encoding and the files it imports,
/// by name.
type PendingFiles = HashMap<String, (Vec<u8>, Vec<String>)>;

impl Schema {
    /// The services the reflection service lists.
    pub(crate) async fn list_services(&mut self) -> Result<Vec<String>, Error> {
        match self
            .ask(MessageRequest::ListServices(String::new()))
            .await?
        {
            MessageResponse::ListServicesResponse(list) => {
                Ok(list.service.into_iter().map(|s| s.name).collect())
            }
            other => Err(unexpected(&other)),
        }
    }

    /// Makes sure the file defining `symbol` is in the pool, asking the server if there is
    /// one. `false`: the server does not know it (from `.proto` files: always `true`, the
    /// pool is all there is).
    pub(crate) async fn load(&mut self, symbol: &str) -> Result<bool, Error> {
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
    /// answers with other files, or with ever more imports, cannot keep the client asking.
    async fn add_files(&mut self, files: Vec<Vec<u8>>) -> Result<(), Error> {
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
                        return Err(Error::BadSchema(format!(
                            "the server's descriptors import {}, which it does not serve",
                            escape(&name)
                        )));
                    }
                };
                let received = self.receive_files(files, &mut pending)?;
                if !received.contains(&name) {
                    let sent: Vec<_> = received.iter().map(|n| escape(n)).collect();
                    return Err(Error::BadSchema(format!(
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
                return Err(Error::BadSchema(
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
                            Error::BadSchema(format!(
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
    ) -> Result<Vec<String>, Error> {
        self.reflected_files = self.reflected_files.saturating_add(files.len());
        if self.reflected_files > MAX_REFLECTED_FILES {
            return Err(Error::BadSchema(format!(
                "the server's reflection service sent more than {MAX_REFLECTED_FILES} file \
                 descriptors, as if its imports never end; pass the .proto files with \
                 {} instead",
                self.names.protos
            )));
        }
        let mut names = Vec::with_capacity(files.len());
        for bytes in files {
            let file = prost_types::FileDescriptorProto::decode(bytes.as_slice()).map_err(|e| {
                Error::BadSchema(format!("the server sent a bad file descriptor: {e}"))
            })?;
            names.push(file.name().to_owned());
            pending.insert(file.name().to_owned(), (bytes, file.dependency));
        }
        Ok(names)
    }

    /// One request to the reflection service, one response.
    async fn ask(&mut self, request: MessageRequest) -> Result<MessageResponse, Error> {
        let (answer_within, names) = (self.answer_within, self.names);
        let Some(client) = self.reflection.as_mut() else {
            return Err(Error::Status(Status::internal(
                "no reflection service to ask: the schema came from .proto files",
            )));
        };
        let request = ServerReflectionRequest {
            host: String::new(),
            message_request: Some(request),
        };
        let mut request = tonic::Request::new(futures_util::stream::iter([request]));
        request.set_timeout(answer_within);
        let answer = async {
            let mut responses = client.server_reflection_info(request).await?.into_inner();
            responses.message().await
        };
        // The deadline goes to the server, and the channel keeps it too; a server that
        // ignores it is not waited for all the same.
        let late = || {
            Status::deadline_exceeded(format!(
                "the reflection service did not answer within {answer_within:?} ({})",
                names.timeout
            ))
        };
        let answer = match tokio::time::timeout(answer_within, answer).await {
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
            Err(status) => return Err(reflection_failed(status, names)),
        };
        let response = response.and_then(|r| r.message_response).ok_or_else(|| {
            Error::Status(Status::internal("the reflection service answered nothing"))
        })?;
        Ok(response)
    }
}

fn reflection_failed(status: Status, names: OptionNames) -> Error {
    if status.code() == Code::Unimplemented {
        let mut message = format!(
            "the server does not offer reflection (grpc.reflection.v1): pass the service's \
             .proto with {} FILE [{} DIR]",
            names.protos, names.import_paths
        );
        if !status.message().is_empty() {
            message.push_str(&format!(" ({})", status.message()));
        }
        return Error::Status(Status::unimplemented(message));
    }
    let message = format!(
        "asking the server's reflection service: {}",
        status.message()
    );
    Error::Status(Status::new(status.code(), message))
}

fn unexpected(response: &MessageResponse) -> Error {
    let what = match response {
        MessageResponse::ErrorResponse(e) => {
            format!("error {}: {}", e.error_code, e.error_message)
        }
        _ => "an answer to another question".to_owned(),
    };
    Error::Status(Status::internal(format!(
        "the reflection service answered {what}"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_no_reflection_hint_carries_the_server_s_message_only_if_there_is_one() {
        let names = OptionNames {
            protos: "--proto",
            import_paths: "--import-path",
            timeout: "--connect-timeout",
        };
        let hint = |status| match reflection_failed(status, names) {
            Error::Status(status) => status.message().to_owned(),
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
}
