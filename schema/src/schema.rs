//! [`Schema`]: the descriptors known so far, and where more come from.

use std::path::PathBuf;
use std::time::Duration;

use prost_reflect::{
    DescriptorPool, EnumDescriptor, MessageDescriptor, MethodDescriptor, ServiceDescriptor,
};
use quicrpc::Channel;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;

use crate::error::Error;
use crate::protos::compile;
use crate::suggest::suggestions;

/// What the program calls its options, for error messages that tell the user what to
/// change: `--proto` for the command-line tool, `protoFiles` for the Node.js binding.
#[derive(Clone, Copy, Debug)]
pub struct OptionNames {
    /// The option that names `.proto` files.
    pub protos: &'static str,
    /// The option that names the directories where they and their imports are found.
    pub import_paths: &'static str,
    /// The option that bounds how long the reflection service has to answer.
    pub timeout: &'static str,
}

/// A named thing in a schema, from [`Schema::symbol`].
#[derive(Debug)]
pub enum Symbol {
    /// A service.
    Service(ServiceDescriptor),
    /// A method of a service.
    Method(MethodDescriptor),
    /// A message type.
    Message(MessageDescriptor),
    /// An enum type.
    Enum(EnumDescriptor),
}

/// The descriptors known so far, and the server to ask for more (none for `.proto` files).
///
/// With reflection, each lookup of a name not yet known asks the server for the file that
/// defines it, and for the imports of that file the pool lacks; a name already known is
/// answered from the pool.
#[derive(Debug)]
pub struct Schema {
    pub(crate) pool: DescriptorPool,
    pub(crate) reflection: Option<ServerReflectionClient<Channel>>,
    /// How long the reflection service has to answer each request.
    pub(crate) answer_within: Duration,
    /// File descriptors the reflection service has sent so far; see
    /// [`crate::reflection::MAX_REFLECTED_FILES`].
    pub(crate) reflected_files: usize,
    pub(crate) names: OptionNames,
}

impl Schema {
    /// Compiles `protos` with their imports (protox, no `protoc`). Each is looked up under
    /// each of `import_paths` in turn, as protoc does, then as a path from the working
    /// directory; without import paths, the directory of each file is one.
    pub fn from_protos(
        protos: &[PathBuf],
        import_paths: &[PathBuf],
        names: OptionNames,
    ) -> Result<Self, Error> {
        Ok(Self {
            pool: compile(protos, import_paths, names)?,
            reflection: None,
            answer_within: Duration::ZERO,
            reflected_files: 0,
            names,
        })
    }

    /// Asks `channel`'s reflection service (grpc.reflection.v1), which has `answer_within`
    /// to answer each request. Nothing is asked until a name is looked up.
    pub fn from_reflection(channel: Channel, answer_within: Duration, names: OptionNames) -> Self {
        Self {
            pool: DescriptorPool::new(),
            reflection: Some(ServerReflectionClient::new(channel)),
            answer_within,
            reflected_files: 0,
            names,
        }
    }

    /// Every service's full name, sorted.
    pub async fn services(&mut self) -> Result<Vec<String>, Error> {
        let mut names = match self.reflection.is_some() {
            true => self.list_services().await?,
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
    pub async fn service(&mut self, name: &str) -> Result<ServiceDescriptor, Error> {
        let name = name.trim_start_matches('.');
        if let Some(service) = self.pool.get_service_by_name(name) {
            return Ok(service);
        }
        if self.load(name).await?
            && let Some(service) = self.pool.get_service_by_name(name)
        {
            return Ok(service);
        }
        let known = self.services().await?;
        Err(Error::UnknownName(format!(
            "unknown service `{name}`{}",
            suggestions(name, &known, "services")
        )))
    }

    /// A method from `package.Service/Method` (or `package.Service.Method`).
    pub async fn method(&mut self, path: &str) -> Result<MethodDescriptor, Error> {
        let (service, method) = split_method(path)?;
        let service = self.service(service).await?;
        if let Some(found) = service.methods().find(|m| m.name() == method) {
            return Ok(found);
        }
        let known: Vec<String> = service.methods().map(|m| m.name().to_owned()).collect();
        Err(Error::UnknownName(format!(
            "service `{}` has no method `{method}`{}",
            service.full_name(),
            suggestions(method, &known, "methods")
        )))
    }

    /// A service, method, message or enum by full name (a method also as
    /// `package.Service/Method`).
    pub async fn symbol(&mut self, name: &str) -> Result<Symbol, Error> {
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
        Err(Error::UnknownName(format!(
            "unknown symbol `{name}`{}",
            suggestions(&name, &known, "services")
        )))
    }
}

/// `package.Service/Method` (or `package.Service.Method`) into service and method.
pub fn split_method(path: &str) -> Result<(&str, &str), Error> {
    let path = path.trim_start_matches('/');
    let split = path.rsplit_once('/').or_else(|| path.rsplit_once('.'));
    match split {
        Some((service, method)) if !service.is_empty() && !method.is_empty() => {
            Ok((service, method))
        }
        _ => Err(Error::BadMethodPath(format!(
            "bad method {path:?}: expected package.Service/Method"
        ))),
    }
}

/// The HTTP path of a call to `method`: `/package.Service/Method`.
pub fn method_path(method: &MethodDescriptor) -> String {
    format!("/{}/{}", method.parent_service().full_name(), method.name())
}

#[cfg(test)]
mod tests {
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
}
