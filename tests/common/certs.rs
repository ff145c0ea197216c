//! Test certificates, made by the `openssl` command: a throwaway CA
//! signing leaf certificates (ECDSA P-256, two days), in a directory each
//! test has to itself. No key is ever committed.

#![allow(dead_code, reason = "each test crate uses part of it")]

use std::path::PathBuf;
use std::process::Command;

/// A directory of its own for each test's files, removed at the end.
pub struct Dir(PathBuf);

impl Dir {
    pub fn new(name: &str) -> Dir {
        let p = std::env::temp_dir().join(format!("ringws-tls-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Dir(p)
    }

    pub fn path(&self, f: &str) -> PathBuf {
        self.0.join(f)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn openssl(args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("the openssl command (scripts/test.sh installs it)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `openssl req` with a new P-256 key written to `key`, unencrypted, for
/// subject `/CN={cn}`, and `rest` (what to make of it).
fn new_key_request(key: &std::path::Path, cn: &str, rest: &[&str]) {
    let subj = format!("/CN={cn}");
    let mut args = vec![
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
    ];
    args.extend(["-nodes", "-keyout", key.to_str().unwrap(), "-subj", &subj]);
    args.extend(rest);
    openssl(&args);
}

/// A CA (`{ca}.pem`, `{ca}.key`) in `dir`.
pub fn make_ca(dir: &Dir, ca: &str) {
    let pem = dir.path(&format!("{ca}.pem"));
    let key = dir.path(&format!("{ca}.key"));
    new_key_request(
        &key,
        ca,
        &["-x509", "-days", "2", "-out", pem.to_str().unwrap()],
    );
}

/// A leaf `{leaf}.pem` / `{leaf}.key` for `names` (and 127.0.0.1), signed
/// by CA `ca`.
pub fn make_leaf(dir: &Dir, ca: &str, leaf: &str, names: &[&str]) -> (PathBuf, PathBuf) {
    let (pem, key, csr, ext) = (
        dir.path(&format!("{leaf}.pem")),
        dir.path(&format!("{leaf}.key")),
        dir.path(&format!("{leaf}.csr")),
        dir.path(&format!("{leaf}.ext")),
    );
    let sans: Vec<String> = names.iter().map(|n| format!("DNS:{n}")).collect();
    std::fs::write(
        &ext,
        format!("subjectAltName={},IP:127.0.0.1\n", sans.join(",")),
    )
    .unwrap();
    new_key_request(&key, names[0], &["-new", "-out", csr.to_str().unwrap()]);
    openssl(&[
        "x509",
        "-req",
        "-in",
        csr.to_str().unwrap(),
        "-CA",
        dir.path(&format!("{ca}.pem")).to_str().unwrap(),
        "-CAkey",
        dir.path(&format!("{ca}.key")).to_str().unwrap(),
        "-set_serial",
        "7",
        "-days",
        "2",
        "-out",
        pem.to_str().unwrap(),
        "-extfile",
        ext.to_str().unwrap(),
    ]);
    (pem, key)
}
