//! OAuth 1.0 (RFC 5849) signatures, in the two flavours signet knows: MAAS
//! (realm "OAuth", no consumer secret, PLAINTEXT unless told otherwise) and
//! generic OAuth 1.0a (`oauth1`, HMAC-SHA1 unless told otherwise).
//!
//! The header matches oauthlib's byte for byte (docs/signing.md), so that a
//! header signet makes can be compared with one python-libmaas makes.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, percent_encode};
use signet_proto::secret::{Secret, ShapeError, expected_shape, parse_maas, parse_oauth1};
use signet_proto::token::{SignatureMethod, TokenKind, TokenParams};
use zeroize::Zeroizing;

use super::{Freshness, HeaderLine, SignError, SignInput};

/// Everything one OAuth signature needs, whichever flavour it comes from.
struct Credentials<'a> {
    /// Only ever a constant: oauthlib writes it unescaped, as a quoted-string
    /// (RFC 2617), so it must never come from user data.
    realm: Option<&'static str>,
    consumer_key: &'a str,
    consumer_secret: &'a str,
    token: &'a str,
    token_secret: &'a str,
    method: SignatureMethod,
    /// Which kind's shape to blame if the signing key is refused.
    kind: TokenKind,
}

/// MAAS: the key is `consumer_key:token_key:token_secret` and the consumer
/// has no secret. The key's parts are used rather than the copies in
/// `params`, which are display metadata.
pub(super) fn sign_maas(
    params: &TokenParams,
    secret: &Secret,
    input: &SignInput<'_>,
    fresh: &Freshness,
) -> Result<HeaderLine, SignError> {
    let key = parse_maas(secret)?;
    let creds = Credentials {
        realm: Some("OAuth"),
        consumer_key: key.consumer_key,
        consumer_secret: "",
        token: key.token_key,
        token_secret: key.token_secret,
        method: super::oauth_method(TokenKind::Maas, params),
        kind: TokenKind::Maas,
    };
    authorization(&creds, input, fresh)
}

/// Generic OAuth 1.0a: the keys are flags, the two secrets are the secret.
pub(super) fn sign_oauth1(
    params: &TokenParams,
    secret: &Secret,
    input: &SignInput<'_>,
    fresh: &Freshness,
) -> Result<HeaderLine, SignError> {
    let secrets = parse_oauth1(secret)?;
    let consumer_key = params
        .consumer_key
        .as_deref()
        .filter(|k| !k.is_empty())
        .ok_or(SignError::MissingParam("the token's consumer key"))?;
    let token = params
        .token_key
        .as_deref()
        .filter(|k| !k.is_empty())
        .ok_or(SignError::MissingParam("the token's token key"))?;
    let creds = Credentials {
        realm: None,
        consumer_key,
        consumer_secret: secrets.consumer_secret,
        token,
        token_secret: secrets.token_secret,
        method: super::oauth_method(TokenKind::Oauth1, params),
        kind: TokenKind::Oauth1,
    };
    authorization(&creds, input, fresh)
}

/// What a verified `Authorization: OAuth ...` header claimed: the caller
/// checks the timestamp window and that the nonce is new.
#[derive(Debug)]
pub struct Verified {
    pub timestamp: i64,
    pub nonce: String,
}

/// The key a tool holds: all parts public to the tool, none the real
/// token's.
pub struct LocalKey<'a> {
    pub consumer_key: &'a str,
    pub consumer_secret: &'a str,
    pub token: &'a str,
    pub token_secret: &'a str,
}

/// The `name="value"` parameters of an OAuth header, decoded; `None` if it
/// is not one, or names a parameter twice.
fn parse_header(value: &str) -> Option<Vec<(String, String)>> {
    let rest = value.trim_start();
    let (scheme, rest) = rest.split_at_checked(6)?;
    if !scheme.eq_ignore_ascii_case("oauth ") {
        return None;
    }
    let mut out: Vec<(String, String)> = Vec::new();
    for part in rest.split(',') {
        let part = part.trim();
        if part.is_empty() {
            continue;
        }
        let (k, v) = part.split_once('=')?;
        let v = v.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(v);
        let k = k.trim().to_string();
        if out.iter().any(|(seen, _)| *seen == k) {
            return None;
        }
        out.push((k, percent_decode_str(v).decode_utf8().ok()?.into_owned()));
    }
    Some(out)
}

/// Checks a tool's OAuth 1.0 signature over `input` against `key`
/// (RFC 5849 §3.2): the consumer key and token must be the key's, the
/// method PLAINTEXT, HMAC-SHA1 or HMAC-SHA256, and the signature right,
/// compared in constant time. The reason for a refusal never quotes the
/// header.
pub fn verify(
    header: &str,
    input: &SignInput<'_>,
    key: &LocalKey<'_>,
) -> Result<Verified, &'static str> {
    use subtle::ConstantTimeEq as _;
    let params = parse_header(header).ok_or("the Authorization header is not OAuth")?;
    let get = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let consumer = get("oauth_consumer_key").ok_or("no oauth_consumer_key")?;
    let token = get("oauth_token").ok_or("no oauth_token")?;
    let same_consumer: bool = consumer.as_bytes().ct_eq(key.consumer_key.as_bytes()).into();
    let same_token: bool = token.as_bytes().ct_eq(key.token.as_bytes()).into();
    if !(same_consumer & same_token) {
        return Err("the consumer key or token is not this proxy's");
    }
    let method = match get("oauth_signature_method").ok_or("no oauth_signature_method")? {
        "PLAINTEXT" => SignatureMethod::Plaintext,
        "HMAC-SHA1" => SignatureMethod::HmacSha1,
        "HMAC-SHA256" => SignatureMethod::HmacSha256,
        _ => return Err("an unknown oauth_signature_method"),
    };
    if get("oauth_version").is_some_and(|v| v != "1.0") {
        return Err("an oauth_version other than 1.0");
    }
    let given = get("oauth_signature").ok_or("no oauth_signature")?;
    let timestamp = get("oauth_timestamp")
        .and_then(|t| t.parse::<i64>().ok())
        .ok_or("no usable oauth_timestamp")?;
    let nonce = get("oauth_nonce")
        .filter(|n| !n.is_empty() && n.len() <= 255)
        .ok_or("no usable oauth_nonce")?;
    let protocol: Vec<(&str, &str)> = params
        .iter()
        .filter(|(k, _)| k != "realm" && k != "oauth_signature")
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let creds = Credentials {
        realm: None,
        consumer_key: key.consumer_key,
        consumer_secret: key.consumer_secret,
        token: key.token,
        token_secret: key.token_secret,
        method,
        kind: TokenKind::Oauth1,
    };
    let want = signature(&creds, input, &protocol).map_err(|_| "the request cannot be signed")?;
    if !bool::from(given.as_bytes().ct_eq(want.as_bytes())) {
        return Err("the signature is wrong");
    }
    Ok(Verified { timestamp, nonce: nonce.to_string() })
}

fn method_name(method: SignatureMethod) -> &'static str {
    match method {
        SignatureMethod::Plaintext => "PLAINTEXT",
        SignatureMethod::HmacSha1 => "HMAC-SHA1",
        SignatureMethod::HmacSha256 => "HMAC-SHA256",
    }
}

/// The `Authorization: OAuth ...` line, parameters in oauthlib's order.
fn authorization(
    creds: &Credentials<'_>,
    input: &SignInput<'_>,
    fresh: &Freshness,
) -> Result<HeaderLine, SignError> {
    let timestamp = fresh.timestamp.to_string();
    let protocol = [
        ("oauth_nonce", fresh.nonce.as_str()),
        ("oauth_timestamp", timestamp.as_str()),
        ("oauth_version", "1.0"),
        ("oauth_signature_method", method_name(creds.method)),
        ("oauth_consumer_key", creds.consumer_key),
        ("oauth_token", creds.token),
    ];
    let signature = signature(creds, input, &protocol)?;

    let fields = protocol.iter().copied().chain([("oauth_signature", signature.as_str())]);
    // Sized up front so the buffer holding the (possibly secret) signature
    // never reallocates and leaves an unwiped copy behind.
    let capacity = "OAuth realm=\"\", ".len()
        + creds.realm.map_or(0, str::len)
        + fields.clone().map(|(k, v)| k.len() + "=\"\", ".len() + 3 * v.len()).sum::<usize>();
    let mut value = Zeroizing::new(String::with_capacity(capacity));
    value.push_str("OAuth ");
    let mut first = true;
    if let Some(realm) = creds.realm {
        value.push_str("realm=\"");
        value.push_str(realm);
        value.push('"');
        first = false;
    }
    for (name, v) in fields {
        if !first {
            value.push_str(", ");
        }
        first = false;
        value.push_str(name);
        value.push_str("=\"");
        encode_into(v.as_bytes(), &mut value);
        value.push('"');
    }
    Ok(HeaderLine { name: "Authorization".into(), value })
}

/// The oauth_signature value, before the header's own percent-encoding.
fn signature(
    creds: &Credentials<'_>,
    input: &SignInput<'_>,
    protocol: &[(&str, &str)],
) -> Result<Zeroizing<String>, SignError> {
    let key = signing_key(creds.consumer_secret, creds.token_secret);
    let mac = match creds.method {
        // PLAINTEXT signs nothing: the key is the signature (RFC 5849 §3.4.4).
        SignatureMethod::Plaintext => return Ok(key),
        SignatureMethod::HmacSha1 => {
            let base = base_string(input.method, input.url, input.form, protocol)?;
            hmac::<Hmac<sha1::Sha1>>(&key, &base)
        }
        SignatureMethod::HmacSha256 => {
            let base = base_string(input.method, input.url, input.form, protocol)?;
            hmac::<Hmac<sha2::Sha256>>(&key, &base)
        }
    };
    // HMAC takes a key of any length, so this never fails; it is mapped
    // rather than unwrapped so that no input can ever panic the agent.
    let mac = mac.ok_or_else(|| {
        SignError::Shape(ShapeError {
            kind: creds.kind,
            problem: "the signing key was refused by HMAC",
            expected: expected_shape(creds.kind),
        })
    })?;
    Ok(Zeroizing::new(STANDARD.encode(mac)))
}

fn hmac<M: Mac + hmac::digest::KeyInit>(key: &str, message: &str) -> Option<Vec<u8>> {
    let mut mac = <M as Mac>::new_from_slice(key.as_bytes()).ok()?;
    mac.update(message.as_bytes());
    Some(mac.finalize().into_bytes().to_vec())
}

/// `enc(consumer_secret)&enc(token_secret)` (RFC 5849 §3.4.2).
fn signing_key(consumer_secret: &str, token_secret: &str) -> Zeroizing<String> {
    let mut key =
        Zeroizing::new(String::with_capacity(3 * (consumer_secret.len() + token_secret.len()) + 1));
    encode_into(consumer_secret.as_bytes(), &mut key);
    key.push('&');
    encode_into(token_secret.as_bytes(), &mut key);
    key
}

/// The signature base string (RFC 5849 §3.4.1): method, base string URI and
/// normalised parameters, each percent-encoded, joined by `&`. `protocol`
/// holds the oauth_* parameters to sign (never realm or oauth_signature).
pub(super) fn base_string(
    method: &str,
    url: &url::Url,
    form: &[(String, String)],
    protocol: &[(&str, &str)],
) -> Result<String, SignError> {
    let uri = base_string_uri(url)?;

    // §3.4.1.3.2: every parameter encoded, then sorted by encoded name and
    // encoded value (byte order), so repeated names keep all their values.
    let mut pairs: Vec<(String, String)> = Vec::new();
    if let Some(query) = url.query() {
        pairs.extend(
            parse_form_urlencoded(query).into_iter().map(|(k, v)| (encode(&k), encode(&v))),
        );
    }
    pairs.extend(form.iter().map(|(k, v)| (encode(k.as_bytes()), encode(v.as_bytes()))));
    pairs.extend(protocol.iter().map(|(k, v)| (encode(k.as_bytes()), encode(v.as_bytes()))));
    pairs.sort_unstable();
    let normalized = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&");

    let mut out = encode(method.to_ascii_uppercase().as_bytes());
    out.push('&');
    encode_into(uri.as_bytes(), &mut out);
    out.push('&');
    encode_into(normalized.as_bytes(), &mut out);
    Ok(out)
}

/// §3.4.1.2: scheme and host lower-cased, the port only when it is not the
/// scheme's default, the path as sent, no query, no fragment, no user info.
fn base_string_uri(url: &url::Url) -> Result<String, SignError> {
    let scheme = url.scheme().to_ascii_lowercase();
    let host = url
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or(SignError::MissingParam("the URL's host"))?
        .to_ascii_lowercase();
    let mut out = format!("{scheme}://{host}");
    // `url` already drops a default port when parsing http(s), but a Url
    // built another way might still carry one: drop it here regardless.
    let default = match scheme.as_str() {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    };
    if let Some(port) = url.port().filter(|&p| Some(p) != default) {
        out.push(':');
        out.push_str(&port.to_string());
    }
    let path = url.path();
    out.push_str(if path.is_empty() { "/" } else { path });
    Ok(out)
}

/// Splits a query as `application/x-www-form-urlencoded` (`+` is a space),
/// into raw bytes: a query need not be UTF-8, and decoding it lossily would
/// sign something other than what is sent.
fn parse_form_urlencoded(query: &str) -> Vec<(Vec<u8>, Vec<u8>)> {
    query
        .split('&')
        .filter(|part| !part.is_empty())
        .map(|part| {
            let (name, value) = part.split_once('=').unwrap_or((part, ""));
            (form_decode(name), form_decode(value))
        })
        .collect()
}

/// A stray `%` stands for itself, as browsers and the `url` crate read it.
fn form_decode(s: &str) -> Vec<u8> {
    percent_decode_str(&s.replace('+', " ")).collect()
}

/// RFC 5849 §3.6: everything but the RFC 3986 unreserved set is encoded.
const OAUTH_ENCODE: &AsciiSet =
    &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// RFC 5849 §3.6: everything but the RFC 3986 unreserved set becomes `%XX`
/// with upper-case hex.
pub(super) fn encode(bytes: &[u8]) -> String {
    percent_encode(bytes, OAUTH_ENCODE).to_string()
}

/// [`encode`] into `out`, which callers size up front so that a buffer
/// holding a secret never reallocates and leaves an unwiped copy behind.
fn encode_into(bytes: &[u8], out: &mut String) {
    for piece in percent_encode(bytes, OAUTH_ENCODE) {
        out.push_str(piece);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> url::Url {
        url::Url::parse(s).unwrap()
    }

    fn fresh(timestamp: i64, nonce: &str) -> Freshness {
        Freshness { timestamp, nonce: nonce.into() }
    }

    fn oauth1_params(sig: SignatureMethod) -> TokenParams {
        TokenParams {
            consumer_key: Some("ck".into()),
            token_key: Some("tk".into()),
            signature: Some(sig),
            ..TokenParams::default()
        }
    }

    fn header(line: &HeaderLine) -> String {
        format!("{}: {}", line.name, &*line.value)
    }

    const WHOAMI: &str = "http://maas.example:5240/MAAS/api/2.0/users/?op=whoami";

    // docs/signing.md, MAAS, first vector.
    #[test]
    fn maas_plaintext_vector() {
        let u = url(WHOAMI);
        let input = SignInput { method: "GET", url: &u, form: &[] };
        let secret = Secret::from_str_value("ConsumerKeyAAA:TokenKeyBBB:TokenSecretCCC");
        let line =
            sign_maas(&TokenParams::default(), &secret, &input, &fresh(1700000000, "1234567890"))
                .unwrap();
        assert_eq!(
            header(&line),
            r#"Authorization: OAuth realm="OAuth", oauth_nonce="1234567890", oauth_timestamp="1700000000", oauth_version="1.0", oauth_signature_method="PLAINTEXT", oauth_consumer_key="ConsumerKeyAAA", oauth_token="TokenKeyBBB", oauth_signature="%26TokenSecretCCC""#
        );
    }

    // docs/signing.md, MAAS, secret with reserved characters: encoded once for the
    // signature, once more in the header; `~` survives both.
    #[test]
    fn maas_plaintext_reserved_characters_vector() {
        let u = url(WHOAMI);
        let input = SignInput { method: "GET", url: &u, form: &[] };
        let secret = Secret::from_str_value("ck:tk:a+b/c=d~e");
        let params =
            TokenParams { signature: Some(SignatureMethod::Plaintext), ..TokenParams::default() };
        let line =
            sign_maas(&params, &secret, &input, &fresh(1700000000, "1234567890123456789")).unwrap();
        assert_eq!(
            header(&line),
            r#"Authorization: OAuth realm="OAuth", oauth_nonce="1234567890123456789", oauth_timestamp="1700000000", oauth_version="1.0", oauth_signature_method="PLAINTEXT", oauth_consumer_key="ck", oauth_token="tk", oauth_signature="%26a%252Bb%252Fc%253Dd~e""#
        );
    }

    // docs/signing.md, MAAS with --signature hmac-sha1.
    #[test]
    fn maas_hmac_sha1_vector() {
        let u = url(WHOAMI);
        let input = SignInput { method: "GET", url: &u, form: &[] };
        let secret = Secret::from_str_value("ConsumerKeyAAA:TokenKeyBBB:TokenSecretCCC");
        let params =
            TokenParams { signature: Some(SignatureMethod::HmacSha1), ..TokenParams::default() };
        let line = sign_maas(&params, &secret, &input, &fresh(1700000000, "1234567890")).unwrap();
        assert_eq!(
            header(&line),
            r#"Authorization: OAuth realm="OAuth", oauth_nonce="1234567890", oauth_timestamp="1700000000", oauth_version="1.0", oauth_signature_method="HMAC-SHA1", oauth_consumer_key="ConsumerKeyAAA", oauth_token="TokenKeyBBB", oauth_signature="M2sofYDR0qvcBMtZlKdDAmIgFY8%3D""#
        );
        assert!(!line.value.contains("TokenSecretCCC"));
    }

    // docs/signing.md, oauth1 HMAC-SHA1: POST with a form body and a query.
    #[test]
    fn oauth1_hmac_sha1_post_vector() {
        let u = url("https://api.example.com/v1/items?b=2&a=1");
        let form = [("x".to_string(), "1".to_string()), ("y".to_string(), "two words".to_string())];
        let input = SignInput { method: "POST", url: &u, form: &form };
        let secret = Secret::from_str_value("cs\nts");
        let line = sign_oauth1(
            &oauth1_params(SignatureMethod::HmacSha1),
            &secret,
            &input,
            &fresh(1700000000, "abc123"),
        )
        .unwrap();
        assert_eq!(
            header(&line),
            r#"Authorization: OAuth oauth_nonce="abc123", oauth_timestamp="1700000000", oauth_version="1.0", oauth_signature_method="HMAC-SHA1", oauth_consumer_key="ck", oauth_token="tk", oauth_signature="51kyHKZ2%2BbPYtr1Hu75epF0CH1c%3D""#
        );
        // HMAC-SHA1 is the oauth1 default.
        let default = TokenParams { signature: None, ..oauth1_params(SignatureMethod::HmacSha1) };
        let again = sign_oauth1(&default, &secret, &input, &fresh(1700000000, "abc123")).unwrap();
        assert_eq!(*again.value, *line.value);
    }

    // docs/signing.md, oauth1 HMAC-SHA256 with a UTF-8 query value and an empty one.
    #[test]
    fn oauth1_hmac_sha256_vector() {
        let u = url("https://api.example.com/v1/items?q=caf%C3%A9&a=");
        let input = SignInput { method: "GET", url: &u, form: &[] };
        let line = sign_oauth1(
            &oauth1_params(SignatureMethod::HmacSha256),
            &Secret::from_str_value("cs\nts"),
            &input,
            &fresh(1700000001, "n0nce"),
        )
        .unwrap();
        assert_eq!(
            header(&line),
            r#"Authorization: OAuth oauth_nonce="n0nce", oauth_timestamp="1700000001", oauth_version="1.0", oauth_signature_method="HMAC-SHA256", oauth_consumer_key="ck", oauth_token="tk", oauth_signature="l2Th%2FQTjGB5XzmVVqhrUNhm%2BXcmOOh3rAqkuA5Kc8ms%3D""#
        );
    }

    fn rfc_creds() -> Credentials<'static> {
        Credentials {
            realm: Some("Photos"),
            consumer_key: "dpf43f3p2l4k3l03",
            consumer_secret: "kd94hf93k423kf44",
            token: "nnch734d00sl2jdk",
            token_secret: "pfkkdhi9sl3r4s00",
            method: SignatureMethod::HmacSha1,
            kind: TokenKind::Oauth1,
        }
    }

    const RFC_URL: &str = "http://photos.example.net/photos?file=vacation.jpg&size=original";

    // RFC 5849 §1.2, with oauth_version as signet sends it.
    #[test]
    fn rfc5849_example_with_version() {
        let u = url(RFC_URL);
        let input = SignInput { method: "GET", url: &u, form: &[] };
        let line = authorization(&rfc_creds(), &input, &fresh(137131202, "chapoH")).unwrap();
        assert_eq!(
            header(&line),
            r#"Authorization: OAuth realm="Photos", oauth_nonce="chapoH", oauth_timestamp="137131202", oauth_version="1.0", oauth_signature_method="HMAC-SHA1", oauth_consumer_key="dpf43f3p2l4k3l03", oauth_token="nnch734d00sl2jdk", oauth_signature="1IAE9RzK%2BDqSqVTdQ%2F0zWANXVzs%3D""#
        );
        let protocol = [
            ("oauth_nonce", "chapoH"),
            ("oauth_timestamp", "137131202"),
            ("oauth_version", "1.0"),
            ("oauth_signature_method", "HMAC-SHA1"),
            ("oauth_consumer_key", "dpf43f3p2l4k3l03"),
            ("oauth_token", "nnch734d00sl2jdk"),
        ];
        assert_eq!(
            *signature(&rfc_creds(), &input, &protocol).unwrap(),
            "1IAE9RzK+DqSqVTdQ/0zWANXVzs="
        );
    }

    // RFC 5849 §1.2 exactly as the RFC prints it, without oauth_version.
    #[test]
    fn rfc5849_example_base_string_without_version() {
        let u = url(RFC_URL);
        let protocol = [
            ("oauth_consumer_key", "dpf43f3p2l4k3l03"),
            ("oauth_token", "nnch734d00sl2jdk"),
            ("oauth_signature_method", "HMAC-SHA1"),
            ("oauth_timestamp", "137131202"),
            ("oauth_nonce", "chapoH"),
        ];
        let base = base_string("get", &u, &[], &protocol).unwrap();
        assert_eq!(
            base,
            "GET&http%3A%2F%2Fphotos.example.net%2Fphotos&file%3Dvacation.jpg%26oauth_consumer_key%3Ddpf43f3p2l4k3l03%26oauth_nonce%3DchapoH%26oauth_signature_method%3DHMAC-SHA1%26oauth_timestamp%3D137131202%26oauth_token%3Dnnch734d00sl2jdk%26size%3Doriginal"
        );
        let input = SignInput { method: "GET", url: &u, form: &[] };
        assert_eq!(
            *signature(&rfc_creds(), &input, &protocol).unwrap(),
            "MdpQcU8iPSUjWoN/UDMsK2sui9I="
        );
    }

    // From oauthlib 4.0.1 (Client(...).sign(...)): `+` in the query is a
    // space, a repeated name keeps every value sorted by value, and an empty
    // value still counts.
    #[test]
    fn oauthlib_plus_and_repeated_names() {
        let u = url("https://api.example.com/search?q=a+b&tag=z&tag=a&tag=a%20b&empty=");
        let input = SignInput { method: "GET", url: &u, form: &[] };
        let fr = fresh(1700000002, "xyz");
        let line = sign_oauth1(
            &oauth1_params(SignatureMethod::HmacSha1),
            &Secret::from_str_value("cs\nts"),
            &input,
            &fr,
        )
        .unwrap();
        assert_eq!(
            header(&line),
            r#"Authorization: OAuth oauth_nonce="xyz", oauth_timestamp="1700000002", oauth_version="1.0", oauth_signature_method="HMAC-SHA1", oauth_consumer_key="ck", oauth_token="tk", oauth_signature="%2B1SDRgdqao2csGgAb1YFypE6BHQ%3D""#
        );
        let protocol = [
            ("oauth_nonce", "xyz"),
            ("oauth_timestamp", "1700000002"),
            ("oauth_version", "1.0"),
            ("oauth_signature_method", "HMAC-SHA1"),
            ("oauth_consumer_key", "ck"),
            ("oauth_token", "tk"),
        ];
        assert_eq!(
            base_string("GET", &u, &[], &protocol).unwrap(),
            "GET&https%3A%2F%2Fapi.example.com%2Fsearch&empty%3D%26oauth_consumer_key%3Dck%26oauth_nonce%3Dxyz%26oauth_signature_method%3DHMAC-SHA1%26oauth_timestamp%3D1700000002%26oauth_token%3Dtk%26oauth_version%3D1.0%26q%3Da%2520b%26tag%3Da%26tag%3Da%2520b%26tag%3Dz"
        );
    }

    // From oauthlib 4.0.1: HMAC-SHA256 POST to a non-default port and an
    // upper-case host, a name repeated across query and form, UTF-8 form
    // values, and secrets with reserved and non-ASCII characters.
    #[test]
    fn oauthlib_port_form_and_unicode_secrets() {
        let u = url("http://API.Example.com:8080/v1/upload?op=add");
        let form = [
            ("name".to_string(), "café crème".to_string()),
            ("op".to_string(), "x".to_string()),
            ("z".to_string(), "~".to_string()),
        ];
        let input = SignInput { method: "post", url: &u, form: &form };
        let line = sign_oauth1(
            &oauth1_params(SignatureMethod::HmacSha256),
            &Secret::from_str_value("c s&\ntök/en"),
            &input,
            &fresh(1700000003, "n-2"),
        )
        .unwrap();
        assert_eq!(
            header(&line),
            r#"Authorization: OAuth oauth_nonce="n-2", oauth_timestamp="1700000003", oauth_version="1.0", oauth_signature_method="HMAC-SHA256", oauth_consumer_key="ck", oauth_token="tk", oauth_signature="kp%2BcUS0GQF1LAoU4TGBcZNGlLk%2FbsdoC1UQIysSR824%3D""#
        );
    }

    // From oauthlib 4.0.1: oauth1 PLAINTEXT with a consumer secret.
    #[test]
    fn oauthlib_oauth1_plaintext() {
        let u = url("https://api.example.com/x");
        let input = SignInput { method: "GET", url: &u, form: &[] };
        let line = sign_oauth1(
            &oauth1_params(SignatureMethod::Plaintext),
            &Secret::from_str_value("a&b\nc d~"),
            &input,
            &fresh(1700000004, "n3"),
        )
        .unwrap();
        assert_eq!(
            header(&line),
            r#"Authorization: OAuth oauth_nonce="n3", oauth_timestamp="1700000004", oauth_version="1.0", oauth_signature_method="PLAINTEXT", oauth_consumer_key="ck", oauth_token="tk", oauth_signature="a%2526b%26c%2520d~""#
        );
    }

    #[test]
    fn percent_encoding_edge_cases() {
        let cases: [(&str, &str); 9] = [
            ("", ""),
            ("AZaz09-._~", "AZaz09-._~"),
            (" ", "%20"),
            ("+", "%2B"),
            ("a b+c", "a%20b%2Bc"),
            (":/?#[]@!$&'()*,;=%", "%3A%2F%3F%23%5B%5D%40%21%24%26%27%28%29%2A%2C%3B%3D%25"),
            ("é", "%C3%A9"),
            ("€😀", "%E2%82%AC%F0%9F%98%80"),
            ("\n\u{7f}", "%0A%7F"),
        ];
        for (raw, want) in cases {
            assert_eq!(encode(raw.as_bytes()), want, "{raw:?}");
        }
        assert_eq!(encode(&[0x00, 0xff]), "%00%FF");
    }

    #[test]
    fn form_decoding() {
        let pairs = parse_form_urlencoded("a=1&b=x+y&c&d=&&e=%41%zz%4&f=a=b&%C3%A9=%ff");
        let want: [(&[u8], &[u8]); 7] = [
            (b"a", b"1"),
            (b"b", b"x y"),
            (b"c", b""),
            (b"d", b""),
            (b"e", b"A%zz%4"),
            (b"f", b"a=b"),
            ("é".as_bytes(), &[0xff]),
        ];
        assert_eq!(pairs.len(), want.len());
        for ((k, v), (wk, wv)) in pairs.iter().zip(want) {
            assert_eq!((k.as_slice(), v.as_slice()), (wk, wv));
        }
    }

    #[test]
    fn base_string_uri_ports_and_case() {
        let cases = [
            ("http://h:80/", "http://h/"),
            ("https://h:443/", "https://h/"),
            ("http://h:443/", "http://h:443/"),
            ("https://h:80/", "https://h:80/"),
            ("http://h:8080/p", "http://h:8080/p"),
            ("https://h:8443/a/b/", "https://h:8443/a/b/"),
            ("HTTP://Example.COM", "http://example.com/"),
            ("https://user:pw@h/p?q=1#frag", "https://h/p"),
            ("http://[::1]:5240/MAAS/", "http://[::1]:5240/MAAS/"),
            ("http://h/a%20b/c", "http://h/a%20b/c"),
        ];
        for (raw, want) in cases {
            assert_eq!(base_string_uri(&url(raw)).unwrap(), want, "{raw}");
        }
        // A Url whose port was set after parsing is normalised the same way.
        let mut u = url("http://h/");
        u.set_port(Some(80)).unwrap();
        assert_eq!(base_string_uri(&u).unwrap(), "http://h/");
    }

    #[test]
    fn base_string_needs_a_host() {
        let u = url("data:text/plain,hi");
        let err = base_string("GET", &u, &[], &[]).unwrap_err();
        assert!(matches!(err, SignError::MissingParam(_)), "{err:?}");
    }

    // PLAINTEXT signs no base string, so it needs no host.
    #[test]
    fn plaintext_ignores_the_url() {
        let u = url("data:text/plain,hi");
        let input = SignInput { method: "GET", url: &u, form: &[] };
        let line = sign_maas(
            &TokenParams::default(),
            &Secret::from_str_value("ck:tk:ts"),
            &input,
            &fresh(1, "n"),
        )
        .unwrap();
        assert!(line.value.ends_with(r#"oauth_signature="%26ts""#), "{}", &*line.value);
    }

    #[test]
    fn non_default_port_is_signed() {
        let a = url("https://api.example.com/v1/items");
        let b = url("https://api.example.com:8443/v1/items");
        let sig = |u: &url::Url| {
            let input = SignInput { method: "GET", url: u, form: &[] };
            sign_oauth1(
                &oauth1_params(SignatureMethod::HmacSha1),
                &Secret::from_str_value("cs\nts"),
                &input,
                &fresh(1, "n"),
            )
            .unwrap()
            .value
        };
        assert_ne!(*sig(&a), *sig(&b));
        assert_eq!(*sig(&a), *sig(&url("https://api.example.com:443/v1/items")));
    }

    #[test]
    fn oauth1_needs_its_keys() {
        let u = url("https://api.example.com/x");
        let input = SignInput { method: "GET", url: &u, form: &[] };
        let secret = Secret::from_str_value("cs\nts");
        for (ck, tk) in [(None, Some("tk")), (Some("ck"), None), (Some(""), Some("tk"))] {
            let params = TokenParams {
                consumer_key: ck.map(Into::into),
                token_key: tk.map(Into::into),
                ..TokenParams::default()
            };
            let err = sign_oauth1(&params, &secret, &input, &fresh(1, "n")).unwrap_err();
            assert!(matches!(err, SignError::MissingParam(_)), "{err:?}");
        }
    }

    // MAAS takes its keys from the secret, not from the metadata copies.
    #[test]
    fn maas_keys_come_from_the_secret() {
        let u = url(WHOAMI);
        let input = SignInput { method: "GET", url: &u, form: &[] };
        let params = TokenParams {
            consumer_key: Some("Stale".into()),
            token_key: Some("Stale".into()),
            ..TokenParams::default()
        };
        let line = sign_maas(&params, &Secret::from_str_value("ck:tk:ts"), &input, &fresh(1, "n"))
            .unwrap();
        assert!(line.value.contains(r#"oauth_consumer_key="ck", oauth_token="tk""#));
        assert!(!line.value.contains("Stale"));
    }
}
