//! What the dynamic loader can tell before and after a vendor's library is opened, the
//! same for every vendor: whether the library is certainly absent (so that a host
//! without it pays nothing), which file an explicit path means, and whether a failed
//! dlopen means "not installed" or "broken".

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Whether the dynamic loader certainly cannot find `name`, judged from its cache and
/// the directories it falls back to. A failed dlopen walks dozens of directories:
/// about 0.3 ms, a fifth of `status`, on every host without the vendor's driver, and
/// `status` asks for two vendors. Anything unusual (LD_LIBRARY_PATH set, no readable
/// cache) leaves the answer to dlopen.
pub(super) fn surely_not_installed(name: &str) -> bool {
    if std::env::var_os("LD_LIBRARY_PATH").is_some_and(|paths| !paths.is_empty()) {
        return false;
    }
    // Read once per process: each vendor asks.
    static CACHE: OnceLock<Option<Vec<u8>>> = OnceLock::new();
    let Some(cache) = CACHE.get_or_init(|| std::fs::read("/etc/ld.so.cache").ok()) else {
        return false;
    };
    // A plain byte-by-byte scan of the 30-100 KB cache costs about 20 µs per name;
    // memmem's vectorised search about 1 µs.
    if memchr::memmem::find(cache, name.as_bytes()).is_some() {
        return false;
    }
    // glibc also looks in its trusted directories for names ldconfig has not cached.
    let multiarch = format!("{}-linux-gnu", std::env::consts::ARCH);
    let trusted = [
        format!("/lib/{multiarch}"),
        format!("/usr/lib/{multiarch}"),
        "/lib64".to_owned(),
        "/usr/lib64".to_owned(),
        "/lib".to_owned(),
        "/usr/lib".to_owned(),
    ];
    !trusted.iter().any(|dir| Path::new(dir).join(name).exists())
}

/// The file an explicit `path` means: `path` itself, or `name` inside it when it is a
/// directory. Never a bare name: dlopen searches the loader path for a name without a
/// slash, and an explicit path must mean that file and nothing else.
pub(super) fn explicit_file(path: &Path, name: &str) -> PathBuf {
    let file = if path.is_dir() {
        path.join(name)
    } else {
        path.to_path_buf()
    };
    if file.is_relative() {
        Path::new(".").join(file)
    } else {
        file
    }
}

/// Whether a dlopen error for the bare library `name` means "not installed".
///
/// libloading only hands over the loader's message, so this matches text; Rust
/// programs never call setlocale, so the message is untranslated. Both loaders name the
/// file they could not find first: if the library itself was found but one of its
/// dependencies was not, the message starts with the dependency, and a broken install
/// deserves a warning.
pub(super) fn loader_found_nothing(message: &str, name: &str) -> bool {
    // glibc
    message
        .strip_prefix(name)
        .is_some_and(|rest| rest.starts_with(": cannot open shared object file: No such file"))
        // musl
        || message
            .strip_prefix("Error loading shared library ")
            .and_then(|rest| rest.strip_prefix(name))
            .is_some_and(|rest| rest.starts_with(": No such file"))
}
