//! Endpoint URLs from the configuration, checked before anything runs, so
//! that `validate` refuses what a client would refuse at run time (the AWS
//! SDK fails every request on an S3 endpoint with a query; any client fails
//! on port 99999 or a missing host). Problems show the URL without its
//! secrets.

use crate::redact::scrub_url;

/// Which client will use the URL: what each accepts differs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndpointUse {
    /// The AWS SDK's S3 client: no query, no fragment.
    S3,
    /// The AWS SDK's Kinesis client (it ignores a query, with a warning).
    Kinesis,
    /// A Firehose-style HTTP endpoint: the query is sent.
    Http,
}

/// `Ok` if `url` is usable as `used_by`'s endpoint; otherwise the problem,
/// naming the URL (without user information or query) and what is
/// allowed.
pub fn check(url: &str, used_by: EndpointUse) -> Result<(), String> {
    // As written, less its secrets: the url crate would normalise it.
    let shown = scrub_url(url);
    const EXPECTED: &str = "expected http://host[:port][/path] or https://...";
    let Some(rest) = url.strip_prefix("http://").or_else(|| url.strip_prefix("https://")) else {
        return Err(format!("{shown:?} is not a URL: {EXPECTED}"));
    };
    // The url crate reads `http:///x` as `http://x/`: look at the text.
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority.rsplit('@').next().unwrap_or_default();
    if host.is_empty() || host.starts_with(':') {
        return Err(format!("{shown:?} has no host: {EXPECTED}"));
    }
    let parsed = reqwest::Url::parse(url).map_err(|err| format!("{shown:?} is not a valid URL ({err}): {EXPECTED}"))?;
    if used_by == EndpointUse::S3 && (parsed.query().is_some() || parsed.fragment().is_some()) {
        return Err(format!(
            "{shown:?} (query or fragment not shown) must not have a query string or fragment: the AWS SDK refuses them in an S3 endpoint"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usable_urls_pass() {
        for url in [
            "http://127.0.0.1:9000",
            "https://minio.local/base/",
            "http://user:pass@[::1]:65535/x",
        ] {
            assert_eq!(check(url, EndpointUse::S3), Ok(()), "{url}");
        }
        assert_eq!(check("https://r.example/in?key=k", EndpointUse::Http), Ok(()));
        assert_eq!(check("http://k.local:4567/?x=y", EndpointUse::Kinesis), Ok(()));
    }

    #[test]
    fn problems_name_the_url_without_its_secrets() {
        let cases = [
            (
                "http://u:pa55word@127.0.0.1:99999/?token=t0ken",
                EndpointUse::Http,
                "\"http://127.0.0.1:99999/\" is not a valid URL (invalid port number): expected http://host[:port][/path] or https://...",
            ),
            (
                "http://u:pa55word@:9000/x",
                EndpointUse::Kinesis,
                "\"http://:9000/x\" has no host: expected http://host[:port][/path] or https://...",
            ),
            ("http:///x", EndpointUse::S3, "\"http:///x\" has no host: expected http://host[:port][/path] or https://..."),
            (
                "ftp://u:pa55word@h/",
                EndpointUse::S3,
                "\"ftp://h/\" is not a URL: expected http://host[:port][/path] or https://...",
            ),
            (
                "http://u:pa55word@h:1/base?token=t0ken",
                EndpointUse::S3,
                "\"http://h:1/base\" (query or fragment not shown) must not have a query string or fragment: the AWS SDK refuses them in an S3 endpoint",
            ),
        ];
        for (url, used_by, want) in cases {
            let problem = check(url, used_by).unwrap_err();
            assert_eq!(problem, want, "{url}");
            assert!(!problem.contains("pa55word") && !problem.contains("t0ken"));
        }
    }
}
