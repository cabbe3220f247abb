//! `quicrpc list` and `quicrpc describe`: what a server (or a `.proto`) offers, in `.proto`
//! syntax.

use std::fmt::Write as _;

use clap::Args;
use prost_reflect::{
    DynamicMessage, EnumDescriptor, FieldDescriptor, Kind, MessageDescriptor, MethodDescriptor,
    ServiceDescriptor, Value,
};

use quicrpc_schema::{Schema, Symbol, escape, escape_keeping_lines};

use crate::error::CliError;
use crate::schema::SchemaArgs;
use crate::target::TargetArgs;

/// `quicrpc list`.
#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  quicrpc list localhost:50051 --ca ca.pem                        # services
  quicrpc list localhost:50051 quicrpc.testing.Echo --ca ca.pem   # its methods
  quicrpc list localhost:50051 --proto proto/testing/echo.proto -I proto")]
pub(crate) struct ListArgs {
    #[command(flatten)]
    target: TargetArgs,

    /// Lists this service's methods (as package.Service/Method, ready for `call`) instead of
    /// the services.
    #[arg(value_name = "SERVICE")]
    service: Option<String>,

    #[command(flatten)]
    schema: SchemaArgs,
}

/// `quicrpc describe`.
#[derive(Debug, Args)]
#[command(after_help = "\
Examples:
  quicrpc describe localhost:50051 quicrpc.testing.Echo --ca ca.pem
  quicrpc describe localhost:50051 quicrpc.testing.Echo/Unary --ca ca.pem
  quicrpc describe localhost:50051 quicrpc.testing.EchoRequest --ca ca.pem")]
pub(crate) struct DescribeArgs {
    #[command(flatten)]
    target: TargetArgs,

    /// A service, method (package.Service/Method), message or enum, by full name.
    #[arg(value_name = "SYMBOL")]
    symbol: String,

    #[command(flatten)]
    schema: SchemaArgs,
}

/// The schema: the `--proto` files, without connecting, or the server's reflection.
async fn open(target: &TargetArgs, args: &SchemaArgs) -> Result<Schema, CliError> {
    target.uri()?;
    if args.has_protos() {
        return args.open(None, target.connect_timeout);
    }
    args.open(Some(target.connect().await?), target.connect_timeout)
}

/// Runs `quicrpc list`.
pub(crate) async fn list(args: ListArgs) -> Result<(), CliError> {
    let mut schema = open(&args.target, &args.schema).await?;
    let lines = match &args.service {
        None => schema.services().await?,
        Some(name) => {
            let service = schema.service(name).await?;
            service
                .methods()
                .map(|m| format!("{}/{}", service.full_name(), m.name()))
                .collect()
        }
    };
    // Names from the server's reflection: whatever it chose to send.
    for line in lines {
        println!("{}", escape(&line));
    }
    Ok(())
}

/// Runs `quicrpc describe`.
pub(crate) async fn describe(args: DescribeArgs) -> Result<(), CliError> {
    let mut schema = open(&args.target, &args.schema).await?;
    let text = match schema.symbol(&args.symbol).await? {
        Symbol::Service(service) => service_text(&service),
        Symbol::Method(method) => {
            // The request message too: what -d must hold.
            let mut text = method_text(&method, "");
            text.push('\n');
            text.push_str(&message_text(&method.input()));
            text
        }
        Symbol::Message(message) => message_text(&message),
        Symbol::Enum(e) => enum_text(&e),
    };
    // The names in it may be the server's, and descriptors do not check them.
    print!("{}", escape_keeping_lines(&text));
    Ok(())
}

fn service_text(service: &ServiceDescriptor) -> String {
    let mut text = format!("service {} {{\n", service.full_name());
    for method in service.methods() {
        text.push_str(&method_text(&method, "  "));
    }
    text.push_str("}\n");
    text
}

/// `rpc Name(Request) returns (stream Reply);`, with its options, if any, in a block.
fn method_text(method: &MethodDescriptor, indent: &str) -> String {
    let stream = |yes: bool| if yes { "stream " } else { "" };
    let mut text = format!(
        "{indent}rpc {}({}{}) returns ({}{})",
        method.name(),
        stream(method.is_client_streaming()),
        method.input().full_name(),
        stream(method.is_server_streaming()),
        method.output().full_name(),
    );
    let options = options_text(&method.options());
    if options.is_empty() {
        text.push_str(";\n");
    } else {
        text.push_str(" {\n");
        for option in options {
            let _ = writeln!(text, "{indent}  option {option};");
        }
        let _ = writeln!(text, "{indent}}}");
    }
    text
}

/// `name = value` for each option set, extensions (such as `(quicrpc.priority)`) in
/// parentheses.
fn options_text(options: &DynamicMessage) -> Vec<String> {
    let fields = options
        .fields()
        .map(|(field, value)| format!("{} = {}", field.name(), value_text(&field.kind(), value)));
    let extensions = options.extensions().map(|(extension, value)| {
        format!(
            "({}) = {}",
            extension.full_name(),
            value_text(&extension.kind(), value)
        )
    });
    fields.chain(extensions).collect()
}

fn value_text(kind: &Kind, value: &Value) -> String {
    match (kind, value) {
        (Kind::Enum(e), Value::EnumNumber(n)) => e
            .get_value(*n)
            .map_or_else(|| n.to_string(), |v| v.name().to_owned()),
        (_, Value::String(s)) => format!("{s:?}"),
        (_, Value::Bool(b)) => b.to_string(),
        (_, Value::I32(n)) => n.to_string(),
        (_, Value::I64(n)) => n.to_string(),
        (_, Value::U32(n)) => n.to_string(),
        (_, Value::U64(n)) => n.to_string(),
        (_, Value::F32(n)) => n.to_string(),
        (_, Value::F64(n)) => n.to_string(),
        (_, other) => format!("{other:?}"),
    }
}

fn message_text(message: &MessageDescriptor) -> String {
    let mut text = format!("message {} {{\n", message.full_name());
    for field in message.fields() {
        let _ = writeln!(
            text,
            "  {}{} {} = {};",
            label(&field),
            type_name(&field),
            field.name(),
            field.number()
        );
    }
    text.push_str("}\n");
    text
}

fn label(field: &FieldDescriptor) -> &'static str {
    if field.is_map() {
        ""
    } else if field.is_list() {
        "repeated "
    } else if field.field_descriptor_proto().proto3_optional() {
        "optional "
    } else {
        ""
    }
}

fn type_name(field: &FieldDescriptor) -> String {
    if field.is_map()
        && let Kind::Message(entry) = field.kind()
    {
        let key = entry.map_entry_key_field();
        let value = entry.map_entry_value_field();
        return format!("map<{}, {}>", type_name(&key), type_name(&value));
    }
    match field.kind() {
        Kind::Double => "double".into(),
        Kind::Float => "float".into(),
        Kind::Int32 => "int32".into(),
        Kind::Int64 => "int64".into(),
        Kind::Uint32 => "uint32".into(),
        Kind::Uint64 => "uint64".into(),
        Kind::Sint32 => "sint32".into(),
        Kind::Sint64 => "sint64".into(),
        Kind::Fixed32 => "fixed32".into(),
        Kind::Fixed64 => "fixed64".into(),
        Kind::Sfixed32 => "sfixed32".into(),
        Kind::Sfixed64 => "sfixed64".into(),
        Kind::Bool => "bool".into(),
        Kind::String => "string".into(),
        Kind::Bytes => "bytes".into(),
        Kind::Message(m) => m.full_name().to_owned(),
        Kind::Enum(e) => e.full_name().to_owned(),
    }
}

fn enum_text(e: &EnumDescriptor) -> String {
    let mut text = format!("enum {} {{\n", e.full_name());
    for value in e.values() {
        let _ = writeln!(text, "  {} = {};", value.name(), value.number());
    }
    text.push_str("}\n");
    text
}
