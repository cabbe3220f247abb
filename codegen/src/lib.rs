//! Build-time code generation for [quicrpc](https://docs.rs/quicrpc).
//!
//! `quicrpc-build` turns `.proto` service definitions into Rust code in a build script,
//! without a `protoc` binary on the machine:
//!
//! 1. [protox] parses the files into a `FileDescriptorSet`;
//! 2. `tonic-prost-build` emits the messages and the tonic client and server stubs, exactly
//!    as tonic users know them;
//! 3. `quicrpc-build` appends, per service, a *method table*: each method's full path, call
//!    kind, priority (from the `(quicrpc.priority)` option) and idempotency (from the standard
//!    `idempotency_level` option). The quicrpc runtime reads these tables on both sides of a
//!    call.
//!
//! # Example
//!
//! ```no_run
//! // build.rs
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     quicrpc_build::configure().compile_protos(&["proto/helloworld.proto"], &["proto"])?;
//!     Ok(())
//! }
//! ```
//!
//! and in the crate:
//!
//! ```ignore
//! pub mod helloworld {
//!     quicrpc::include_proto!("helloworld");
//! }
//! ```
//!
//! `quicrpc/options.proto`, which declares `(quicrpc.priority)`, is built into this crate:
//! `import "quicrpc/options.proto";` works without the file on the include path.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::fs;
use std::path::{Path, PathBuf};

use heck::{ToShoutySnakeCase, ToSnakeCase};
use prost_reflect::{DescriptorPool, MethodDescriptor, Value};
use protox::file::{
    ChainFileResolver, File, FileResolver, GoogleFileResolver, IncludeFileResolver,
};

/// The text of `quicrpc/options.proto`, which declares the `(quicrpc.priority)` method option.
pub const OPTIONS_PROTO: &str = include_str!("../proto/quicrpc/options.proto");

/// The import name of [`OPTIONS_PROTO`].
pub const OPTIONS_PROTO_NAME: &str = "quicrpc/options.proto";

/// Starts a [`Builder`] with the defaults: client and server stubs, `cargo:rerun-if-changed`
/// lines for every input file, output into `OUT_DIR`.
pub fn configure() -> Builder {
    Builder {
        build_client: true,
        build_server: true,
        out_dir: None,
        emit_rerun_if_changed: true,
        file_descriptor_set_path: None,
        tonic: None,
    }
}

/// Compiles one `.proto` file, using its directory as the include path.
///
/// A shortcut for `configure().compile_protos(&[proto], &[dir of proto])`.
pub fn compile_protos(proto: impl AsRef<Path>) -> Result<(), Error> {
    let proto = proto.as_ref();
    let include = proto.parent().unwrap_or(Path::new("."));
    configure().compile_protos(&[proto], &[include])
}

type TonicHook = Box<dyn FnOnce(tonic_prost_build::Builder) -> tonic_prost_build::Builder>;

/// Configures and runs code generation. Created by [`configure`].
pub struct Builder {
    build_client: bool,
    build_server: bool,
    out_dir: Option<PathBuf>,
    emit_rerun_if_changed: bool,
    file_descriptor_set_path: Option<PathBuf>,
    tonic: Option<TonicHook>,
}

impl fmt::Debug for Builder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Builder")
            .field("build_client", &self.build_client)
            .field("build_server", &self.build_server)
            .field("out_dir", &self.out_dir)
            .field("emit_rerun_if_changed", &self.emit_rerun_if_changed)
            .field("file_descriptor_set_path", &self.file_descriptor_set_path)
            .field("tonic", &self.tonic.as_ref().map(|_| ".."))
            .finish()
    }
}

impl Builder {
    /// Whether to generate client stubs (`FooClient`). Default: `true`.
    pub fn build_client(mut self, enable: bool) -> Self {
        self.build_client = enable;
        self
    }

    /// Whether to generate server traits and services (`Foo`, `FooServer`). Default: `true`.
    pub fn build_server(mut self, enable: bool) -> Self {
        self.build_server = enable;
        self
    }

    /// Where to write the generated files. Default: the `OUT_DIR` that cargo gives build
    /// scripts, which is what [`quicrpc::include_proto!`] reads.
    ///
    /// [`quicrpc::include_proto!`]: https://docs.rs/quicrpc/latest/quicrpc/macro.include_proto.html
    pub fn out_dir(mut self, dir: impl AsRef<Path>) -> Self {
        self.out_dir = Some(dir.as_ref().to_owned());
        self
    }

    /// Whether to print `cargo:rerun-if-changed` for every `.proto` file read, imports
    /// included. Default: `true`.
    pub fn emit_rerun_if_changed(mut self, enable: bool) -> Self {
        self.emit_rerun_if_changed = enable;
        self
    }

    /// Also writes the encoded `FileDescriptorSet` (imports and source info included, custom
    /// options preserved) to this path, e.g. for `tonic-reflection`. Default: not written.
    pub fn file_descriptor_set_path(mut self, path: impl AsRef<Path>) -> Self {
        self.file_descriptor_set_path = Some(path.as_ref().to_owned());
        self
    }

    /// Adjusts the underlying `tonic-prost-build` builder, e.g. to add type attributes.
    ///
    /// The hook runs after quicrpc has applied its own settings; it must not change the output
    /// directory. One of those settings is the codec: stubs use `quicrpc::codegen::ProstCodec`
    /// (tonic-prost's, with 1 KiB first buffers instead of 8 KiB); `codec_path` in the hook
    /// names another.
    pub fn tonic(
        mut self,
        hook: impl FnOnce(tonic_prost_build::Builder) -> tonic_prost_build::Builder + 'static,
    ) -> Self {
        self.tonic = Some(Box::new(hook));
        self
    }

    /// Compiles `protos`, resolving imports against `includes` (in order), then against
    /// quicrpc's own `quicrpc/options.proto` and the Google well-known types.
    ///
    /// A syntax or import error fails with the file, line, column and message.
    pub fn compile_protos<P, I>(self, protos: &[P], includes: &[I]) -> Result<(), Error>
    where
        P: AsRef<Path>,
        I: AsRef<Path>,
    {
        let out_dir = match &self.out_dir {
            Some(dir) => dir.clone(),
            None => std::env::var_os("OUT_DIR")
                .map(PathBuf::from)
                .ok_or_else(|| {
                    Error::new("OUT_DIR is not set: run from a build script or set out_dir()")
                })?,
        };

        let mut resolver = ChainFileResolver::new();
        for include in includes {
            resolver.add(IncludeFileResolver::new(include.as_ref().to_owned()));
        }
        resolver.add(OptionsFileResolver);
        resolver.add(GoogleFileResolver::new());

        let mut compiler = protox::Compiler::with_file_resolver(resolver);
        compiler.include_imports(true).include_source_info(true);
        for proto in protos {
            compiler
                .open_file(proto.as_ref())
                .map_err(|e| Error::from_protox(&e))?;
        }

        if self.emit_rerun_if_changed {
            for file in compiler.files() {
                if let Some(path) = file.path() {
                    println!("cargo:rerun-if-changed={}", path.display());
                }
            }
        }
        if let Some(path) = &self.file_descriptor_set_path {
            fs::write(path, compiler.encode_file_descriptor_set())
                .map_err(|e| Error::new(format!("writing {}: {e}", path.display())))?;
        }

        let requested: Vec<String> = compiler
            .files()
            .filter(|f| !f.is_import())
            .map(|f| f.name().to_owned())
            .collect();
        let pool = compiler.descriptor_pool();
        let tables = method_tables(&pool, &requested)?;

        let mut tonic = tonic_prost_build::configure()
            .build_client(self.build_client)
            .build_server(self.build_server)
            .build_transport(false)
            .codec_path("::quicrpc::codegen::ProstCodec")
            .emit_rerun_if_changed(false)
            .out_dir(&out_dir);
        if let Some(hook) = self.tonic {
            tonic = hook(tonic);
        }
        tonic
            .compile_fds(compiler.file_descriptor_set())
            .map_err(|e| Error::new(format!("generating code: {e}")))?;

        for (package, code) in tables {
            let path = out_dir.join(package_file_name(&package));
            let mut generated = fs::read_to_string(&path)
                .map_err(|e| Error::new(format!("reading {}: {e}", path.display())))?;
            generated.push_str(&code);
            fs::write(&path, generated)
                .map_err(|e| Error::new(format!("writing {}: {e}", path.display())))?;
        }
        Ok(())
    }
}

/// A code generation failure, with a message that names the file and line where there is
/// one. Its `Debug` form is the message, so `fn main() -> Result<..>` build scripts print it
/// readably.
pub struct Error {
    message: String,
}

impl Error {
    fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }

    fn from_protox(err: &protox::Error) -> Self {
        use miette::Diagnostic;

        let file = err.file().unwrap_or("<input>");
        let location = err
            .labels()
            .and_then(|mut labels| labels.next())
            .and_then(|label| {
                let source = err.source_code()?;
                let span = source.read_span(label.inner(), 0, 0).ok()?;
                Some(format!(":{}:{}", span.line() + 1, span.column() + 1))
            })
            .unwrap_or_default();
        let mut message = format!("{file}{location}: {err}");
        if let Some(help) = err.help() {
            let _ = write!(message, " (help: {help})");
        }
        Self { message }
    }

    /// The human-readable description.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

impl From<Error> for std::io::Error {
    fn from(err: Error) -> Self {
        std::io::Error::other(err.message)
    }
}

/// Serves `quicrpc/options.proto` from the copy compiled into this crate.
struct OptionsFileResolver;

impl FileResolver for OptionsFileResolver {
    fn open_file(&self, name: &str) -> Result<File, protox::Error> {
        if name == OPTIONS_PROTO_NAME {
            File::from_source(name, OPTIONS_PROTO)
        } else {
            Err(protox::Error::file_not_found(name))
        }
    }
}

/// The file prost writes a package's code to.
fn package_file_name(package: &str) -> String {
    if package.is_empty() {
        "_.rs".to_owned()
    } else {
        format!("{package}.rs")
    }
}

/// Generates the method-table code for every service in `files`, keyed by protobuf package.
fn method_tables(
    pool: &DescriptorPool,
    files: &[String],
) -> Result<BTreeMap<String, String>, Error> {
    let priority_ext = pool.get_extension_by_name("quicrpc.priority");
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    for name in files {
        let Some(file) = pool.get_file_by_name(name) else {
            continue;
        };
        for service in file.services() {
            let code = out.entry(file.package_name().to_owned()).or_default();
            let module = format!("{}_methods", service.name().to_snake_case());
            let _ = writeln!(code);
            let _ = writeln!(
                code,
                "/// quicrpc's method table for `{}`.",
                service.full_name()
            );
            let _ = writeln!(code, "///");
            let _ = writeln!(
                code,
                "/// Generated by quicrpc-build; the quicrpc runtime reads it on both sides of a call."
            );
            let _ = writeln!(code, "pub mod {module} {{");
            let mut consts = Vec::new();
            for method in service.methods() {
                let info = MethodEntry::read(&method, priority_ext.as_ref())?;
                let konst = method.name().to_shouty_snake_case();
                let _ = writeln!(code, "    /// `{}`", info.path);
                let _ = writeln!(
                    code,
                    "    pub const {konst}: ::quicrpc::MethodInfo = ::quicrpc::MethodInfo::new({:?}, ::quicrpc::CallKind::{}, ::quicrpc::Priority::{}, ::quicrpc::Idempotency::{});",
                    info.path, info.kind, info.priority, info.idempotency
                );
                consts.push(konst);
            }
            let _ = writeln!(
                code,
                "    /// Every method of the service, in declaration order."
            );
            let _ = writeln!(
                code,
                "    pub const ALL: &[::quicrpc::MethodInfo] = &[{}];",
                consts.join(", ")
            );
            let _ = writeln!(code, "    ::quicrpc::codegen::register_methods!(ALL);");
            let _ = writeln!(code, "}}");
        }
    }
    Ok(out)
}

/// One method's entry, as the names of the runtime's enum variants.
struct MethodEntry {
    path: String,
    kind: &'static str,
    priority: &'static str,
    idempotency: &'static str,
}

impl MethodEntry {
    fn read(
        method: &MethodDescriptor,
        priority_ext: Option<&prost_reflect::ExtensionDescriptor>,
    ) -> Result<Self, Error> {
        let path = format!("/{}/{}", method.parent_service().full_name(), method.name());
        let kind = match (method.is_client_streaming(), method.is_server_streaming()) {
            (false, false) => "Unary",
            (false, true) => "ServerStreaming",
            (true, false) => "ClientStreaming",
            (true, true) => "Streaming",
        };
        let options = method.options();
        let priority = match priority_ext {
            Some(ext) if options.has_extension(ext) => match options.get_extension(ext).as_ref() {
                Value::EnumNumber(0 | 3) => "Normal",
                Value::EnumNumber(1) => "Critical",
                Value::EnumNumber(2) => "High",
                Value::EnumNumber(4) => "Low",
                Value::EnumNumber(5) => "Bulk",
                other => {
                    return Err(Error::new(format!(
                        "{}: (quicrpc.priority) has unknown value {other:?}",
                        method.full_name()
                    )));
                }
            },
            _ => "Normal",
        };
        let idempotency = match options.get_field_by_name("idempotency_level").as_deref() {
            Some(Value::EnumNumber(1)) => "NoSideEffects",
            Some(Value::EnumNumber(2)) => "Idempotent",
            _ => "Unknown",
        };
        Ok(Self {
            path,
            kind,
            priority,
            idempotency,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn syntax_error_names_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let proto = write(
            dir.path(),
            "broken.proto",
            "syntax = \"proto3\";\npackage p;\nmessage M {\n  int32 x = ;\n}\n",
        );
        let err = configure()
            .out_dir(dir.path())
            .emit_rerun_if_changed(false)
            .compile_protos(&[&proto], &[dir.path()])
            .unwrap_err();
        assert!(err.message().starts_with("broken.proto:4:"), "{err}");
    }

    #[test]
    fn missing_import_names_the_import() {
        let dir = tempfile::tempdir().unwrap();
        let proto = write(
            dir.path(),
            "a.proto",
            "syntax = \"proto3\";\npackage p;\nimport \"nope.proto\";\n",
        );
        let err = configure()
            .out_dir(dir.path())
            .emit_rerun_if_changed(false)
            .compile_protos(&[&proto], &[dir.path()])
            .unwrap_err();
        assert!(err.message().contains("a.proto:3:"), "{err}");
        assert!(err.message().contains("nope.proto"), "{err}");
    }

    #[test]
    fn method_table_reads_priority_and_idempotency() {
        let dir = tempfile::tempdir().unwrap();
        let proto = write(
            dir.path(),
            "svc.proto",
            r#"syntax = "proto3";
package demo.v1;
import "quicrpc/options.proto";
message M {}
service AgentControl {
  rpc Terminate(M) returns (M) { option (quicrpc.priority) = CRITICAL; }
  rpc Fetch(M) returns (stream M) {
    option idempotency_level = NO_SIDE_EFFECTS;
    option (quicrpc.priority) = BULK;
  }
  rpc Put(stream M) returns (M) { option idempotency_level = IDEMPOTENT; }
  rpc Chat(stream M) returns (stream M);
}
"#,
        );
        configure()
            .out_dir(dir.path())
            .emit_rerun_if_changed(false)
            .compile_protos(&[&proto], &[dir.path()])
            .unwrap();
        let code = fs::read_to_string(dir.path().join("demo.v1.rs")).unwrap();
        assert!(code.contains("pub mod agent_control_methods"), "{code}");
        assert!(code.contains(
            "pub const TERMINATE: ::quicrpc::MethodInfo = ::quicrpc::MethodInfo::new(\"/demo.v1.AgentControl/Terminate\", ::quicrpc::CallKind::Unary, ::quicrpc::Priority::Critical, ::quicrpc::Idempotency::Unknown);"
        ));
        assert!(code.contains("\"/demo.v1.AgentControl/Fetch\", ::quicrpc::CallKind::ServerStreaming, ::quicrpc::Priority::Bulk, ::quicrpc::Idempotency::NoSideEffects"));
        assert!(code.contains("\"/demo.v1.AgentControl/Put\", ::quicrpc::CallKind::ClientStreaming, ::quicrpc::Priority::Normal, ::quicrpc::Idempotency::Idempotent"));
        assert!(code.contains("\"/demo.v1.AgentControl/Chat\", ::quicrpc::CallKind::Streaming, ::quicrpc::Priority::Normal, ::quicrpc::Idempotency::Unknown"));
        assert!(
            code.contains(
                "pub const ALL: &[::quicrpc::MethodInfo] = &[TERMINATE, FETCH, PUT, CHAT];"
            )
        );
        // tonic's stubs are in the same file.
        assert!(code.contains("pub mod agent_control_client"));
        assert!(code.contains("pub mod agent_control_server"));
    }

    #[test]
    fn stubs_use_quicrpcs_codec_unless_the_hook_names_another() {
        let dir = tempfile::tempdir().unwrap();
        let proto = write(
            dir.path(),
            "svc.proto",
            "syntax = \"proto3\";\npackage p;\nmessage M {}\nservice S { rpc Go(M) returns (M); }\n",
        );
        let generate = |builder: Builder| {
            builder
                .out_dir(dir.path())
                .emit_rerun_if_changed(false)
                .compile_protos(&[&proto], &[dir.path()])
                .unwrap();
            fs::read_to_string(dir.path().join("p.rs")).unwrap()
        };
        let code = generate(configure());
        // Client and server.
        assert_eq!(
            code.matches("::quicrpc::codegen::ProstCodec::default()")
                .count(),
            2,
            "{code}"
        );
        assert!(!code.contains("tonic_prost::ProstCodec"), "{code}");

        let code = generate(configure().tonic(|b| b.codec_path("tonic_prost::ProstCodec")));
        assert!(
            code.contains("tonic_prost::ProstCodec::default()"),
            "{code}"
        );
        assert!(!code.contains("::quicrpc::codegen::ProstCodec"), "{code}");
    }
}
