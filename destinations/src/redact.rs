//! Secrets out of every line spillway prints: logs, error messages,
//! `validate` output, error records.
//!
//! A configured URL may carry a secret in its user information
//! (`user:password@`), its query (`?token=...`) or its fragment. Our own
//! code shows URLs through [`url_for_logs`], but other libraries print them
//! in their own text (the AWS SDK puts the whole endpoint in its errors and
//! debug lines, and a query string alone in a warning), so two nets catch
//! what gets through:
//! - [`text_for_logs`] rewrites every URL found in a text, and
//! - the values registered with [`register_url_secrets`] and
//!   [`register_secret`] (the pieces of every configured URL, an access
//!   key) are blanked wherever they appear, with or without their URL.
//!
//! The logger passes every line through [`text_for_logs`], and so do the
//! messages of errors that embed another library's text.

use std::borrow::Cow;
use std::sync::RwLock;

/// What a blanked secret is replaced with.
pub const REDACTED: &str = "<redacted>";

/// Registered values shorter than this are not blanked in free text: a
/// two-letter password would blank every word that contains it, and the
/// URL rewriting removes it from URLs anyway.
const MIN_SECRET_LEN: usize = 4;

/// A user name is often a plain word (`admin`, `user`), which blanking
/// everywhere would garble the logs with; a long one is usually a token
/// (`https://<token>@host`).
const MIN_USERNAME_LEN: usize = 8;

/// Values to blank in every line, longest first (so that a value holding
/// another is blanked whole).
static SECRETS: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// `scheme://host[:port]/path`: the URL without user information, query
/// or fragment, any of which may hold a secret. A URL given without a path
/// stays without one (no `/` added). A text that does not parse as a URL
/// loses the same parts, found by their delimiters.
pub fn url_for_logs(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut parsed) if parsed.has_host() => {
            let _ = parsed.set_username("");
            let _ = parsed.set_password(None);
            parsed.set_query(None);
            parsed.set_fragment(None);
            let mut shown = parsed.to_string();
            let given = url.split(['?', '#']).next().unwrap_or(url);
            if parsed.path() == "/" && !given.ends_with('/') {
                shown.pop();
            }
            shown
        }
        _ => scrub_url(url),
    }
}

/// Blanks, in `text`, the user information, query and fragment of every
/// `scheme://` URL, and every registered secret. Borrows when there is
/// nothing to change (the common case for log lines).
pub fn text_for_logs(text: &str) -> Cow<'_, str> {
    let mut out = scrub_urls_in(text);
    let secrets = SECRETS.read().unwrap_or_else(|poisoned| poisoned.into_inner());
    for secret in secrets.iter() {
        if out.contains(secret.as_str()) {
            out = Cow::Owned(out.replace(secret.as_str(), REDACTED));
        }
    }
    out
}

/// Blanks `value` in every line from now on (with its escaped form, as
/// Debug output and JSON logs show it). Values shorter than 4 characters
/// are ignored.
pub fn register_secret(value: &str) {
    if value.chars().count() < MIN_SECRET_LEN {
        return;
    }
    let escaped = value.escape_debug().to_string();
    let mut secrets = SECRETS.write().unwrap_or_else(|poisoned| poisoned.into_inner());
    for form in [value.to_owned(), escaped] {
        if !secrets.contains(&form) {
            secrets.push(form);
        }
    }
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
}

/// Registers the parts of `url` that may hold a secret: the password, a
/// long user name, `user:password`, the query, each query value and the
/// fragment, both as written and percent-decoded.
pub fn register_url_secrets(url: &str) {
    let parts = UrlParts::split(url);
    let mut values: Vec<(&str, usize)> = Vec::new();
    if let Some(userinfo) = parts.userinfo {
        match userinfo.split_once(':') {
            Some((user, password)) => {
                values.push((userinfo, MIN_SECRET_LEN));
                values.push((user, MIN_USERNAME_LEN));
                values.push((password, MIN_SECRET_LEN));
            }
            None => values.push((userinfo, MIN_USERNAME_LEN)),
        }
    }
    for text in [parts.query, parts.fragment].into_iter().flatten() {
        values.push((text, MIN_SECRET_LEN));
        for pair in text.split('&') {
            values.push((pair, MIN_SECRET_LEN));
            if let Some((_, value)) = pair.split_once('=') {
                values.push((value, MIN_SECRET_LEN));
            }
        }
    }
    for (value, min_len) in values {
        let decoded = percent_decode(value);
        for form in [value, decoded.as_str()] {
            if form.chars().count() >= min_len {
                register_secret(form);
            }
        }
    }
}

/// The pieces of a URL found by their delimiters alone, so that even a URL
/// that does not parse loses its secrets.
struct UrlParts<'a> {
    /// `scheme://`, if any.
    scheme: &'a str,
    userinfo: Option<&'a str>,
    /// Host, port and path.
    location: &'a str,
    query: Option<&'a str>,
    fragment: Option<&'a str>,
}

impl<'a> UrlParts<'a> {
    fn split(url: &'a str) -> Self {
        let (scheme, rest) = match url.find("://") {
            Some(at) if is_scheme(&url[..at]) => url.split_at(at + 3),
            _ => ("", url),
        };
        let (rest, fragment) = match rest.split_once('#') {
            Some((rest, fragment)) => (rest, Some(fragment)),
            None => (rest, None),
        };
        let (rest, query) = match rest.split_once('?') {
            Some((rest, query)) => (rest, Some(query)),
            None => (rest, None),
        };
        let authority_end = rest.find('/').unwrap_or(rest.len());
        let (userinfo, location) = match rest[..authority_end].rfind('@') {
            Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
            None => (None, rest),
        };
        Self {
            scheme,
            userinfo,
            location,
            query,
            fragment,
        }
    }
}

/// `url` without user information, query or fragment, found by their
/// delimiters: the URL as written, less its secrets.
pub(crate) fn scrub_url(url: &str) -> String {
    let parts = UrlParts::split(url);
    format!("{}{}", parts.scheme, parts.location)
}

fn is_scheme(text: &str) -> bool {
    let mut chars = text.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

/// Characters that end a URL inside free text: none of them may appear
/// unencoded in a URL, and quotes and backslashes surround URLs in Debug
/// and JSON output.
fn ends_url(c: char) -> bool {
    c.is_whitespace() || c.is_control() || matches!(c, '"' | '\'' | '<' | '>' | '`' | '{' | '}' | '|' | '\\' | '^')
}

/// Closing punctuation right after a URL in prose or Debug output
/// (`(at http://h/?q)`, `[http://h/?q]`): kept when the query is cut.
fn is_closing(c: char) -> bool {
    matches!(c, ')' | ']' | ',' | ';')
}

/// Rewrites every `scheme://...` URL in `text` with [`scrub_url`].
fn scrub_urls_in(text: &str) -> Cow<'_, str> {
    let mut out = String::new();
    // How much of `text` is already in `out`.
    let mut copied = 0;
    let mut search = 0;
    while let Some(found) = text[search..].find("://") {
        let marker = search + found;
        let scheme_start = text[..marker]
            .char_indices()
            .rev()
            .take_while(|(_, c)| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
            .last()
            .map_or(marker, |(i, _)| i);
        // The scheme starts with a letter: skip leading digits, dots...
        let scheme_start = text[scheme_start..marker]
            .find(|c: char| c.is_ascii_alphabetic())
            .map_or(marker, |i| scheme_start + i);
        let end = text[marker + 3..].find(ends_url).map_or(text.len(), |i| marker + 3 + i);
        search = end.max(marker + 3);
        if scheme_start == marker || scheme_start < copied {
            continue;
        }
        let url = &text[scheme_start..end];
        let parts = UrlParts::split(url);
        if parts.userinfo.is_none() && parts.query.is_none() && parts.fragment.is_none() {
            continue;
        }
        out.push_str(&text[copied..scheme_start]);
        out.push_str(&scrub_url(url));
        if parts.query.is_some() || parts.fragment.is_some() {
            let closing = url.len() - url.trim_end_matches(is_closing).len();
            out.push_str(&url[url.len() - closing..]);
        }
        copied = end;
    }
    if copied == 0 {
        Cow::Borrowed(text)
    } else {
        out.push_str(&text[copied..]);
        Cow::Owned(out)
    }
}

/// `%XX` sequences decoded; anything else, and invalid UTF-8, kept as it
/// is (lossily).
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(high), Some(low)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((high * 16 + low) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_credentials_queries_and_fragments() {
        assert_eq!(
            url_for_logs("https://user:secret@minio.local:9000/base?X-Amz-Signature=abc#f"),
            "https://minio.local:9000/base"
        );
        assert_eq!(url_for_logs("http://token@127.0.0.1:5000"), "http://127.0.0.1:5000");
        assert_eq!(url_for_logs("http://127.0.0.1:5000"), "http://127.0.0.1:5000");
        assert_eq!(url_for_logs("http://127.0.0.1:5000/"), "http://127.0.0.1:5000/");
        assert_eq!(
            url_for_logs("http://127.0.0.1:5000?key=secret"),
            "http://127.0.0.1:5000"
        );
        assert_eq!(url_for_logs("not a url with a secret"), "not a url with a secret");
    }

    #[test]
    fn urls_that_do_not_parse_lose_the_same_parts() {
        assert_eq!(
            url_for_logs("http://user:pa55word@127.0.0.1:99999/x?token=t0ken#frag"),
            "http://127.0.0.1:99999/x"
        );
        assert_eq!(url_for_logs("http://user:pa55word@"), "http://");
        assert_eq!(url_for_logs("user:pa55word@host:1/p?q=1"), "host:1/p");
    }

    #[test]
    fn urls_inside_text_lose_their_secrets_and_the_rest_stays() {
        let line = r#"dispatch failure: Custom endpoint `http://user:pa55word@127.0.0.1:1/base?token=t0ken` was not a valid URI (Endpoint { url: "https://tok3n@h.example/p?a=b#c", x: 1 }) (see http://h/x?q=1), done"#;
        assert_eq!(
            text_for_logs(line),
            r#"dispatch failure: Custom endpoint `http://127.0.0.1:1/base` was not a valid URI (Endpoint { url: "https://h.example/p", x: 1 }) (see http://h/x), done"#
        );
        let json =
            r#"{"message":"will apply endpoint Endpoint { url: \"http://u:pa55word@127.0.0.1:1/?token=t0ken\" }"}"#;
        assert_eq!(
            text_for_logs(json),
            r#"{"message":"will apply endpoint Endpoint { url: \"http://127.0.0.1:1/\" }"}"#
        );
        let plain = "nothing to see at http://127.0.0.1:5000/path: ok";
        assert!(matches!(text_for_logs(plain), Cow::Borrowed(_)));
        assert_eq!(text_for_logs("a :// b ://"), "a :// b ://");
        assert_eq!(text_for_logs("1.2://x@y"), "1.2://x@y");
    }

    #[test]
    fn registered_secrets_are_blanked_anywhere() {
        register_url_secrets("http://longusername:Pa%2Fss-w0rd@host:1/?token=reg1stered-t0ken&x=1");
        let line = r#"query specified in endpoint will be ignored query=token=reg1stered-t0ken&x=1 user longusername pass Pa/ss-w0rd or Pa%2Fss-w0rd"#;
        let shown = text_for_logs(line);
        for secret in ["reg1stered", "longusername", "Pa/ss", "Pa%2Fss"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        assert!(
            shown.starts_with("query specified in endpoint will be ignored query=<redacted>"),
            "{shown}"
        );
        // Short values are left alone: they would blank ordinary words.
        register_url_secrets("http://user:ab@host/?x=1");
        assert_eq!(text_for_logs("user ab x=1"), "user ab x=1");
    }

    proptest::proptest! {
        /// Whatever surrounds a URL (Debug quotes, JSON escapes, prose,
        /// other URLs), its password and query value never come through,
        /// and text without a URL comes through unchanged.
        #[test]
        fn no_secret_survives_any_surrounding_text(
            before in "[ -~]{0,40}",
            after in "[ -~]{0,40}",
            user in "[a-z]{1,12}",
            password in "[A-Za-z0-9]{4,16}",
            token in "[A-Za-z0-9]{4,16}",
            host in "[a-z]{1,10}(\\.[a-z]{2,5})?(:[0-9]{1,5})?",
            path in "(/[a-z0-9]{0,8}){0,3}",
            wrap in 0..4usize,
        ) {
            let password = format!("P{password}");
            let token = format!("T{token}");
            let url = format!("https://{user}:{password}@{host}{path}?token={token}#frag");
            let wrapped = match wrap {
                0 => url.clone(),
                1 => format!("{url:?}"),
                2 => serde_json::to_string(&format!("Endpoint {{ url: {url:?} }}")).unwrap(),
                _ => format!("(`{url}`)"),
            };
            let text = format!("{before} {wrapped} {after}");
            let shown = text_for_logs(&text);
            proptest::prop_assert!(!shown.contains(&password), "{shown}");
            proptest::prop_assert!(!shown.contains(&token), "{shown}");
            let host_only = host.split(':').next().unwrap();
            proptest::prop_assert!(shown.contains(host_only), "{shown}");
            if !before.contains("://") && !after.contains("://") {
                proptest::prop_assert!(shown.starts_with(&before), "{shown}");
                proptest::prop_assert!(shown.ends_with(&after), "{shown}");
            }
        }

        #[test]
        fn urls_for_logs_never_keep_user_information_or_query(
            user in "[a-z]{1,12}",
            password in "[A-Za-z0-9%]{1,16}",
            token in "[ -~]{1,16}",
            host in "[a-z0-9.:\\[\\]]{0,12}",
        ) {
            let password = format!("P{password}");
            let url = format!("http://{user}:{password}@{host}/p?token=Q{token}");
            let shown = url_for_logs(&url);
            proptest::prop_assert!(!shown.contains('@') && !shown.contains("?token"), "{url} -> {shown}");
            proptest::prop_assert!(!shown.contains(&password), "{url} -> {shown}");
        }
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("a%2Fb%zz%4"), "a/b%zz%4");
        assert_eq!(percent_decode("%E2%82%AC"), "€");
    }
}
