//! Certificates for a TLS redis-server, made with the openssl CLI for each test: a
//! private certificate authority and a server certificate it signed for 127.0.0.1 and
//! localhost (P-256 keys: quick to make, and what rustls accepts).

use std::path::{Path, PathBuf};
use std::process::Command;

use tempfile::TempDir;

pub const CA_CERT: &str = "ca.pem";
pub const SERVER_CERT: &str = "server.pem";
pub const SERVER_KEY: &str = "server.key";

pub struct TestCerts {
    dir: TempDir,
}

impl TestCerts {
    pub fn new() -> TestCerts {
        let dir = tempfile::tempdir().expect("temp dir for certificates");
        let path = dir.path();
        std::fs::write(
            path.join("server.ext"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\n\
             basicConstraints=CA:FALSE\n\
             keyUsage=digitalSignature\n\
             extendedKeyUsage=serverAuth\n",
        )
        .expect("write server.ext");
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        openssl(
            path,
            &[
                "req",
                "-x509",
                "-days",
                "2",
                "-subj",
                "/CN=canhazgpu test CA",
            ],
            &ec,
            &["-keyout", "ca.key", "-out", CA_CERT],
        );
        openssl(
            path,
            &["req", "-subj", "/CN=localhost"],
            &ec,
            &["-keyout", SERVER_KEY, "-out", "server.csr"],
        );
        openssl(
            path,
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                CA_CERT,
                "-CAkey",
                "ca.key",
            ],
            &["-CAcreateserial", "-days", "2", "-extfile", "server.ext"],
            &["-out", SERVER_CERT],
        );
        // redis-server may run as another user than the one that made the key.
        for file in [SERVER_KEY, SERVER_CERT, CA_CERT] {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path.join(file), std::fs::Permissions::from_mode(0o644))
                .expect("chmod");
        }
        TestCerts { dir }
    }

    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    pub fn ca(&self) -> PathBuf {
        self.dir.path().join(CA_CERT)
    }
}

fn openssl(dir: &Path, first: &[&str], second: &[&str], third: &[&str]) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(first)
        .args(second)
        .args(third)
        .output()
        .expect("openssl must be installed for the TLS tests (apt-get install openssl)");
    assert!(
        out.status.success(),
        "openssl {first:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
