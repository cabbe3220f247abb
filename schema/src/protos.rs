//! `.proto` files compiled at run time, with their imports (protox, no `protoc`).

use std::path::{Path, PathBuf};

use prost_reflect::DescriptorPool;

use crate::error::Error;
use crate::schema::OptionNames;

/// Compiles `protos` with their imports, found under `import_paths` (by default, the
/// directory of each file).
pub(crate) fn compile(
    protos: &[PathBuf],
    import_paths: &[PathBuf],
    names: OptionNames,
) -> Result<DescriptorPool, Error> {
    let protos = protos
        .iter()
        .map(|path| find_proto(path, import_paths, names))
        .collect::<Result<Vec<_>, _>>()?;
    let mut includes = import_paths.to_vec();
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
    let bad = |e: protox::Error| Error::BadSchema(format!("compiling {}: {e}", names.protos));
    let mut compiler = protox::Compiler::new(&includes).map_err(bad)?;
    compiler.include_imports(true);
    compiler.open_files(&protos).map_err(bad)?;
    Ok(compiler.descriptor_pool())
}

/// Where a `.proto` name is: as protoc and grpcurl look, under each import path in turn,
/// then as a path from the working directory.
fn find_proto(name: &Path, import_paths: &[PathBuf], names: OptionNames) -> Result<PathBuf, Error> {
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
        Error::NoSuchFile(match looked.is_empty() {
            true => format!("{} {}: no such file", names.protos, name.display()),
            false => format!(
                "{} {}: no such file here or under {} {}",
                names.protos,
                name.display(),
                names.import_paths,
                looked.join(", ")
            ),
        })
    })
}
