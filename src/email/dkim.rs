//! DKIM signing setup: the key from `email.dkim_key_file` and the list of headers the signature
//! covers. RFC 8058 wants `List-Unsubscribe` and `List-Unsubscribe-Post` signed, which lettre's
//! `DkimConfig::default_config` (From, Subject, To, Date) does not do.

use super::message::MailSetupError;
use super::DkimSettings;
use lettre::message::dkim::{
    DkimCanonicalization, DkimCanonicalizationType, DkimConfig, DkimSigningAlgorithm,
    DkimSigningKey,
};
use lettre::message::header::HeaderName;
use rsa::pkcs1::{EncodeRsaPrivateKey, LineEnding};
use rsa::pkcs8::DecodePrivateKey;

/// The headers the signature covers, for every message. One absent from a message (`Reply-To`
/// when none is configured, the `List-*` pair on a verification mail) is still named in `h=`:
/// lettre then hashes nothing for it, which is what RFC 6376 §5.4 prescribes, and it stops
/// anyone from adding that header later without breaking the signature.
///
/// Only headers lettre keeps in `Message::headers` may be named: it writes a multipart's
/// `Content-Type` with the body, so naming that would put a header in `h=` that lettre leaves
/// out of the hash, and no verifier would accept the signature.
const SIGNED_HEADERS: [&str; 9] = [
    "From",
    "Reply-To",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "MIME-Version",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
];

pub(super) fn config(settings: &DkimSettings) -> Result<DkimConfig, MailSetupError> {
    if settings.selector.trim().is_empty() {
        return Err(MailSetupError::DkimSelector);
    }
    let domain = settings.domain.trim();
    if domain.is_empty() || domain.contains(|c: char| c.is_whitespace() || c == '@') {
        return Err(MailSetupError::DkimDomain(settings.domain.clone()));
    }
    let key_error = |reason: String| MailSetupError::DkimKey {
        path: settings.key_file.clone(),
        reason,
    };
    let pem = std::fs::read_to_string(&settings.key_file).map_err(|e| key_error(e.to_string()))?;
    let key = signing_key(&pem).map_err(key_error)?;
    Ok(DkimConfig::new(
        settings.selector.trim().to_owned(),
        domain.to_owned(),
        key,
        SIGNED_HEADERS
            .iter()
            .map(|h| HeaderName::new_from_ascii_str(h))
            .collect(),
        DkimCanonicalization {
            header: DkimCanonicalizationType::Relaxed,
            body: DkimCanonicalizationType::Relaxed,
        },
    ))
}

/// An RSA key in PEM, PKCS#1 (`BEGIN RSA PRIVATE KEY`) or PKCS#8 (`BEGIN PRIVATE KEY`, what
/// OpenSSL 3's `genrsa` and `genpkey` write). lettre reads only PKCS#1, so PKCS#8 is converted.
fn signing_key(pem: &str) -> Result<DkimSigningKey, String> {
    let pkcs1 = if pem.contains("-----BEGIN PRIVATE KEY-----") {
        let key = rsa::RsaPrivateKey::from_pkcs8_pem(pem.trim())
            .map_err(|e| format!("not an RSA private key in PKCS#8 PEM ({e})"))?;
        key.to_pkcs1_pem(LineEnding::LF)
            .map_err(|e| format!("cannot re-encode the key ({e})"))?
            .to_string()
    } else if pem.contains("-----BEGIN RSA PRIVATE KEY-----") {
        pem.trim().to_owned()
    } else {
        return Err(
            "expected a PEM RSA private key (BEGIN RSA PRIVATE KEY or BEGIN PRIVATE KEY); \
             encrypted keys are not supported"
                .into(),
        );
    };
    DkimSigningKey::new(&pkcs1, DkimSigningAlgorithm::Rsa)
        .map_err(|e| format!("not an RSA private key in PKCS#1 PEM ({e})"))
}
