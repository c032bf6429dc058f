//! `--tls`: a certificate made for one proxy, so that tools that speak only
//! HTTPS can use it. A fresh CA signs a leaf for 127.0.0.1 and localhost;
//! the CA's private key is dropped at once, so that nothing else can ever
//! be signed with it, and its certificate is what the tool trusts.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;
use std::sync::Arc;

use signet_proto::Failure;

/// The acceptor for one proxy, and the PEM of the CA to trust.
pub fn acceptor() -> Result<(tokio_rustls::TlsAcceptor, String), Failure> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
    let err = |e: rcgen::Error| Failure::other(format!("cannot make the proxy's certificate: {e}"));

    let ca_key = KeyPair::generate().map_err(err)?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    ca_params.distinguished_name.push(DnType::CommonName, "signet proxy CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca_params.self_signed(&ca_key).map_err(err)?;
    let issuer = rcgen::Issuer::new(ca_params, ca_key);

    let leaf_key = KeyPair::generate().map_err(err)?;
    let mut leaf_params =
        CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .map_err(err)?;
    leaf_params.distinguished_name.push(DnType::CommonName, "127.0.0.1");
    let leaf = leaf_params.signed_by(&leaf_key, &issuer).map_err(err)?;
    drop(issuer);

    let chain = vec![leaf.der().clone()];
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into());
    let tls_err = |e: rustls::Error| Failure::other(format!("cannot set up TLS: {e}"));
    // An explicit provider: reqwest links one too, and with two rustls has
    // no default.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(tls_err)?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(tls_err)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok((tokio_rustls::TlsAcceptor::from(Arc::new(config)), ca_cert.pem()))
}

/// Writes the CA certificate to `path`, 0600 from birth, never over an
/// existing file.
pub fn write_ca(path: &Path, pem: &str) -> Result<(), Failure> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Failure::other(format!("cannot write {}: {e}", path.display())))?;
    f.write_all(pem.as_bytes())
        .map_err(|e| Failure::other(format!("cannot write {}: {e}", path.display())))
}
