//! Pseudonymous patient keys: HMAC-SHA256(patient id, secret). The store never holds a
//! patient identifier in clear; the secret comes from --patient-key-secret or is generated
//! once and kept beside the SQLite database (mode 0600).

use super::StoreError;
use hmac::{KeyInit, Mac};
use std::path::Path;

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

#[derive(Clone)]
pub struct PatientKeyer {
    secret: Vec<u8>,
}

impl std::fmt::Debug for PatientKeyer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PatientKeyer([redacted])")
    }
}

impl PatientKeyer {
    pub fn new(secret: &[u8]) -> Self {
        Self { secret: secret.to_vec() }
    }

    pub fn load_or_create(path: &Path) -> Result<Self, StoreError> {
        if let Ok(existing) = std::fs::read(path) {
            if existing.len() >= 32 {
                return Ok(Self::new(&existing));
            }
            return Err(StoreError::Config(format!("{}: patient-key secret is too short", path.display())));
        }
        let mut secret = [0u8; 32];
        secret[..16].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        secret[16..].copy_from_slice(uuid::Uuid::new_v4().as_bytes());
        let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
        write_private(path, hex.as_bytes())
            .map_err(|source| StoreError::KeyFile { path: path.display().to_string(), source })?;
        Ok(Self::new(hex.as_bytes()))
    }

    pub fn key(&self, patient_id: &str) -> String {
        let mut mac = <HmacSha256 as KeyInit>::new_from_slice(&self.secret).expect("HMAC takes any key length");
        mac.update(patient_id.as_bytes());
        mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
    }
}

#[cfg(unix)]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

#[cfg(not(unix))]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_stable_and_secret_dependent() {
        let a = PatientKeyer::new(b"secret-one-secret-one-secret-one");
        let b = PatientKeyer::new(b"secret-two-secret-two-secret-two");
        assert_eq!(a.key("p1"), a.key("p1"));
        assert_ne!(a.key("p1"), a.key("p2"));
        assert_ne!(a.key("p1"), b.key("p1"));
        assert_eq!(a.key("p1").len(), 64);
        assert!(!a.key("p1").contains("p1"));
    }
}
