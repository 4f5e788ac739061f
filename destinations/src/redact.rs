//! URLs as logs and error messages may show them.

/// `scheme://host[:port]/path`: the URL without user information, query
/// or fragment, any of which may hold a secret; `<invalid url>` if it does
/// not parse. A URL given without a path stays without one (no `/` added).
pub fn url_for_logs(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut parsed) => {
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
        Err(_) => "<invalid url>".to_owned(),
    }
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
        assert_eq!(url_for_logs("not a url with a secret"), "<invalid url>");
    }
}
