//! Kinds whose header carries the secret itself: `api-token`, `bearer`,
//! `basic` and `header` (docs/signing.md).
//!
//! The secret's shape is checked again here, although `add` checked it: a
//! line break in a value would let a stored secret inject extra headers.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use signet_proto::secret::{Secret, ShapeError, expected_shape, validate};
use signet_proto::token::{TokenKind, TokenParams, is_header_name};
use zeroize::Zeroizing;

use super::{HeaderLine, SignError};

/// The secret as text once its kind's shape is confirmed.
fn checked(kind: TokenKind, secret: &Secret) -> Result<&str, SignError> {
    validate(kind, secret)?;
    // `validate` has already refused non-UTF-8; this repeats the check
    // rather than unwrapping.
    secret.expose_str().ok_or_else(|| {
        SignError::Shape(ShapeError {
            kind,
            problem: "it is not valid UTF-8",
            expected: expected_shape(kind),
        })
    })
}

/// `<prefix><secret>` in a buffer sized up front, so that no reallocation
/// leaves an unwiped copy of the secret behind.
fn join(prefix: &str, secret: &str) -> Zeroizing<String> {
    let mut value = Zeroizing::new(String::with_capacity(prefix.len() + secret.len()));
    value.push_str(prefix);
    value.push_str(secret);
    value
}

fn authorization(value: Zeroizing<String>) -> HeaderLine {
    HeaderLine { name: "Authorization".into(), value }
}

/// `Authorization: Api-Token <id>.<secret>`, and `X-Tenant-Name` for a
/// tenant, as vastpy and go-vast-client send them.
pub(super) fn api_token(
    params: &TokenParams,
    secret: &Secret,
) -> Result<Vec<HeaderLine>, SignError> {
    // `validate` runs `parse_api_token`: the `<id>.<secret>` shape is checked.
    let token = checked(TokenKind::ApiToken, secret)?;
    let mut lines = vec![authorization(join("Api-Token ", token))];
    if let Some(tenant) = params.tenant.as_deref() {
        if tenant.is_empty() || tenant.chars().any(char::is_control) {
            return Err(SignError::MissingParam("the token's tenant"));
        }
        lines.push(HeaderLine {
            name: "X-Tenant-Name".into(),
            value: Zeroizing::new(tenant.into()),
        });
    }
    Ok(lines)
}

/// `Authorization: Bearer <token>`.
pub(super) fn bearer(secret: &Secret) -> Result<HeaderLine, SignError> {
    let token = checked(TokenKind::Bearer, secret)?;
    Ok(authorization(join("Bearer ", token)))
}

/// `Authorization: Basic base64(username:password)` (RFC 7617).
pub(super) fn basic(params: &TokenParams, secret: &Secret) -> Result<HeaderLine, SignError> {
    let password = checked(TokenKind::Basic, secret)?;
    // RFC 7617: a user-id cannot contain a colon (the server splits on the
    // first one), and a control character could break the header.
    let username = params
        .username
        .as_deref()
        .filter(|u| !u.contains(':') && !u.chars().any(char::is_control))
        .ok_or(SignError::MissingParam("the token's username"))?;

    let mut plain = Zeroizing::new(String::with_capacity(username.len() + 1 + password.len()));
    plain.push_str(username);
    plain.push(':');
    plain.push_str(password);

    let prefix = "Basic ";
    let encoded_len = base64::encoded_len(plain.len(), true)
        .ok_or(SignError::MissingParam("a password of a sane length"))?;
    let mut value = Zeroizing::new(String::with_capacity(prefix.len() + encoded_len));
    value.push_str(prefix);
    STANDARD.encode_string(plain.as_bytes(), &mut value);
    Ok(authorization(value))
}

/// `<Header-Name>: <value>`.
pub(super) fn header(params: &TokenParams, secret: &Secret) -> Result<HeaderLine, SignError> {
    let value = checked(TokenKind::Header, secret)?;
    let name = params
        .header_name
        .as_deref()
        .filter(|n| is_header_name(n))
        .ok_or(SignError::MissingParam("the token's header name"))?;
    Ok(HeaderLine { name: name.into(), value: join("", value) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> Secret {
        Secret::from_str_value(v)
    }

    fn line(h: &HeaderLine) -> String {
        format!("{}: {}", h.name, &*h.value)
    }

    #[test]
    fn api_token_without_tenant() {
        let lines = api_token(&TokenParams::default(), &s("Ab12Cd34.s3cr.et")).unwrap();
        assert_eq!(lines.len(), 1);
        assert_eq!(line(&lines[0]), "Authorization: Api-Token Ab12Cd34.s3cr.et");
    }

    #[test]
    fn api_token_with_tenant() {
        let params = TokenParams { tenant: Some("tenant-a".into()), ..TokenParams::default() };
        let lines = api_token(&params, &s("Ab12Cd34.secret")).unwrap();
        let shown: Vec<String> = lines.iter().map(line).collect();
        assert_eq!(shown, ["Authorization: Api-Token Ab12Cd34.secret", "X-Tenant-Name: tenant-a"]);
    }

    #[test]
    fn api_token_tenant_cannot_inject() {
        for tenant in ["", "t\r\nX-Evil: 1", "t\n"] {
            let params = TokenParams { tenant: Some(tenant.into()), ..TokenParams::default() };
            let err = api_token(&params, &s("Ab12Cd34.secret")).unwrap_err();
            assert!(matches!(err, SignError::MissingParam(_)), "{tenant:?}: {err:?}");
        }
    }

    #[test]
    fn bearer_header() {
        assert_eq!(line(&bearer(&s("abc.def-ghi")).unwrap()), "Authorization: Bearer abc.def-ghi");
    }

    #[test]
    fn basic_header() {
        // RFC 7617 §2's example.
        let params = TokenParams { username: Some("Aladdin".into()), ..TokenParams::default() };
        assert_eq!(
            line(&basic(&params, &s("open sesame")).unwrap()),
            "Authorization: Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
        );
        // Padding of one `=`, and UTF-8 bytes as they are.
        let params = TokenParams { username: Some("u".into()), ..TokenParams::default() };
        assert_eq!(line(&basic(&params, &s("pwé")).unwrap()), "Authorization: Basic dTpwd8Op");
        assert_eq!(line(&basic(&params, &s("p")).unwrap()), "Authorization: Basic dTpw");
        assert_eq!(line(&basic(&params, &s("pw:x")).unwrap()), "Authorization: Basic dTpwdzp4");
    }

    #[test]
    fn basic_needs_a_usable_username() {
        for username in [None, Some("a:b"), Some("a\nb")] {
            let params =
                TokenParams { username: username.map(Into::into), ..TokenParams::default() };
            let err = basic(&params, &s("pw")).unwrap_err();
            assert!(matches!(err, SignError::MissingParam(_)), "{username:?}: {err:?}");
        }
    }

    #[test]
    fn custom_header() {
        let params =
            TokenParams { header_name: Some("X-API-Key".into()), ..TokenParams::default() };
        assert_eq!(line(&header(&params, &s("value 1")).unwrap()), "X-API-Key: value 1");
    }

    #[test]
    fn custom_header_name_must_be_a_token() {
        for name in [None, Some(""), Some("X Key"), Some("X-Key:"), Some("X\r\nEvil"), Some("Ä")] {
            let params =
                TokenParams { header_name: name.map(Into::into), ..TokenParams::default() };
            let err = header(&params, &s("v")).unwrap_err();
            assert!(matches!(err, SignError::MissingParam(_)), "{name:?}: {err:?}");
        }
    }
}
