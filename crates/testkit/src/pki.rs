//! Throw-away certificate authorities for TLS tests: a CA and the server and client
//! certificates it issues, written as PEM files (what the settings' `*_file` keys name).

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

/// A CA whose files live in a fresh temporary directory.
pub struct TestCa {
    name: String,
    dir: PathBuf,
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A certificate and its key, as files.
#[derive(Debug, Clone)]
pub struct Issued {
    pub cert_file: String,
    pub key_file: String,
    /// Unix time of the certificate's notAfter.
    pub not_after: i64,
}

impl Issued {
    /// The certificate and key as one PEM text (what `reqwest::Identity::from_pem` takes).
    pub fn identity_pem(&self) -> anyhow::Result<Vec<u8>> {
        let mut pem = std::fs::read(&self.key_file)?;
        pem.extend(std::fs::read(&self.cert_file)?);
        Ok(pem)
    }
}

impl TestCa {
    /// An HTTPS client that trusts only this CA (not the system's roots) and presents
    /// `identity` when given: what tests of a TLS door call it with.
    pub fn https_client(&self, identity: Option<&Issued>) -> anyhow::Result<reqwest::Client> {
        let root = reqwest::Certificate::from_pem(self.ca_pem().as_bytes())?;
        let mut builder = reqwest::Client::builder().tls_certs_only([root]);
        if let Some(identity) = identity {
            builder = builder.identity(reqwest::Identity::from_pem(&identity.identity_pem()?)?);
        }
        Ok(builder.build()?)
    }

    /// A new CA named `name` (its common name and its files' prefix).
    pub fn new(name: &str) -> anyhow::Result<TestCa> {
        let dir = std::env::temp_dir().join(format!(
            "chukan-pki-{name}-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir)?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} test CA"));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate()?)?;
        let ca = TestCa {
            name: name.to_owned(),
            dir,
            issuer,
        };
        std::fs::write(ca.ca_file(), ca.issuer.pem())?;
        Ok(ca)
    }

    /// The CA certificate's PEM file (what `*_ca_file` settings name).
    pub fn ca_file(&self) -> String {
        self.path("ca.crt")
    }

    /// The CA certificate in PEM.
    pub fn ca_pem(&self) -> String {
        self.issuer.pem()
    }

    /// A server certificate for `names` (DNS names or IP addresses), valid from yesterday
    /// for 30 days.
    pub fn server(&self, file: &str, names: &[&str]) -> anyhow::Result<Issued> {
        self.issue(file, names, ExtendedKeyUsagePurpose::ServerAuth)
    }

    /// A client certificate with common name `name`, valid from yesterday for 30 days.
    pub fn client(&self, file: &str, name: &str) -> anyhow::Result<Issued> {
        self.issue(file, &[name], ExtendedKeyUsagePurpose::ClientAuth)
    }

    fn issue(
        &self,
        file: &str,
        names: &[&str],
        usage: ExtendedKeyUsagePurpose,
    ) -> anyhow::Result<Issued> {
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = CertificateParams::new(names.clone())?;
        if let Some(first) = names.first() {
            params.distinguished_name.push(DnType::CommonName, first);
        }
        params.extended_key_usages = vec![usage];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let (y, m, d) = day(-1);
        params.not_before = rcgen::date_time_ymd(y, m, d);
        let (y, m, d) = day(30);
        params.not_after = rcgen::date_time_ymd(y, m, d);
        let not_after = params.not_after.unix_timestamp();
        let key = KeyPair::generate()?;
        let cert = params
            .signed_by(&key, &self.issuer)
            .with_context(|| format!("issuing {file} by {}", self.name))?;
        let issued = Issued {
            cert_file: self.path(&format!("{file}.crt")),
            key_file: self.path(&format!("{file}.key")),
            not_after,
        };
        std::fs::write(&issued.cert_file, cert.pem())?;
        std::fs::write(&issued.key_file, key.serialize_pem())?;
        Ok(issued)
    }

    fn path(&self, file: &str) -> String {
        Path::new(&self.dir).join(file).display().to_string()
    }
}

impl Drop for TestCa {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `days` from today (UTC), as rcgen's `(year, month, day)`: valid from yesterday makes a
/// certificate valid now whatever the clocks of a test and a server it talks to say.
fn day(days: i64) -> (i32, u8, u8) {
    use chrono::Datelike as _;
    let date = chrono::Utc::now().date_naive() + chrono::Duration::days(days);
    (date.year(), date.month() as u8, date.day() as u8)
}
