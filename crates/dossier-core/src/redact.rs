//! Secrets out of URLs before they are shown anywhere (config echoes, logs, the API).
//!
//! One function for every crate: the store redacts its own URL, connectors their connection
//! strings, the config its sources' settings. A URL carries secrets in two components, and
//! both are masked: the password of its userinfo (`postgres://ada:***@host/db`) and the value
//! of any query parameter whose name says it is a secret (`?password=***`, `&sslpassword=***`,
//! `&api_key=***`).

/// Query parameter names (lowercase, `-` read as `_`) whose values are secrets; a name is
/// also a secret when it ends with one of [`SECRET_SUFFIXES`].
const SECRET_NAMES: [&str; 9] = [
    "pass",
    "pwd",
    "key",
    "sig",
    "auth",
    "authorization",
    "credential",
    "credentials",
    "signature",
];

/// Endings of secret names: `password`, `sslpassword`, `client_secret`, `access_token`,
/// `api_key`, `apikey`, ...
const SECRET_SUFFIXES: [&str; 7] = [
    "password", "passwd", "pwd", "secret", "token", "_key", "apikey",
];

/// Is a query parameter named `name` (as written in the URL, maybe percent-encoded) a secret?
pub fn is_secret_parameter(name: &str) -> bool {
    let name = percent_decode(name).to_ascii_lowercase().replace('-', "_");
    SECRET_NAMES.contains(&name.as_str()) || SECRET_SUFFIXES.iter().any(|s| name.ends_with(s))
}

/// `url` with the password of its userinfo and the values of its secret query parameters
/// replaced by `***`; anything that is not a URL (`scheme://...`) is returned as it is.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let start = scheme_end + 3;
    let mut out = String::with_capacity(url.len());
    out.push_str(&url[..start]);
    let mut rest = &url[start..];
    if let Some(at) = userinfo_end(rest) {
        match rest[..at].split_once(':') {
            Some((user, _)) => {
                out.push_str(user);
                out.push_str(":***");
            }
            None => out.push_str(&rest[..at]),
        }
        rest = &rest[at..];
    }
    // The fragment never reaches a server; it is kept as written.
    let (rest, fragment) = match rest.find('#') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    match rest.split_once('?') {
        None => out.push_str(rest),
        Some((path, query)) => {
            out.push_str(path);
            out.push('?');
            let pairs: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((name, _)) if is_secret_parameter(name) => format!("{name}=***"),
                    _ => pair.to_string(),
                })
                .collect();
            out.push_str(&pairs.join("&"));
        }
    }
    out.push_str(fragment);
    out
}

/// Where the userinfo of `rest` (the URL after `://`) ends: at the last `@` before the query
/// or fragment, since a password may hold `@` and `/` unencoded (drivers accept it) and a
/// query parameter may hold `@` too. A password may also hold `?` or `#`: then the first `@`
/// ends it, when what comes before it reads `user:password` with no path in it.
fn userinfo_end(rest: &str) -> Option<usize> {
    let authority = &rest[..rest.find(['?', '#']).unwrap_or(rest.len())];
    authority.rfind('@').or_else(|| {
        rest.find('@')
            .filter(|&at| rest[..at].contains(':') && !rest[..at].contains('/'))
    })
}

/// `%XX` sequences decoded (a name spelled `pass%77ord` is still `password`); malformed ones
/// are kept as written.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                out.push((hex(h).unwrap_or(0) * 16 + hex(l).unwrap_or(0)) as u8);
                i += 3;
            }
            (b, ..) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userinfo_passwords_are_masked() {
        assert_eq!(
            redact_url("postgres://u:secret@h/db"),
            "postgres://u:***@h/db"
        );
        assert_eq!(
            redact_url("mysql://root:pw@127.0.0.1:3306/shop"),
            "mysql://root:***@127.0.0.1:3306/shop"
        );
        assert_eq!(
            redact_url("postgres://postgres@h/db"),
            "postgres://postgres@h/db"
        );
        assert_eq!(redact_url("sqlite://x.db"), "sqlite://x.db");
        assert_eq!(redact_url("shop.db"), "shop.db");
        // A password holding `@`, `/` and `:`.
        assert_eq!(
            redact_url("postgres://u:p@ss/w:rd@h:5432/db?sslmode=require"),
            "postgres://u:***@h:5432/db?sslmode=require"
        );
        // A password holding `?` or `#`, which would otherwise start the query or fragment.
        assert_eq!(
            redact_url("postgres://u:pa?ss@h/db"),
            "postgres://u:***@h/db"
        );
        assert_eq!(
            redact_url("postgres://u:pa#ss@h/db"),
            "postgres://u:***@h/db"
        );
        assert_eq!(
            redact_url("postgres://u:p?a#ss@h/db?password=x"),
            "postgres://u:***@h/db?password=***"
        );
        // An `@` in a query parameter is not userinfo.
        assert_eq!(
            redact_url("postgres://h/db?user=a@b.example"),
            "postgres://h/db?user=a@b.example"
        );
    }

    #[test]
    fn secret_query_parameters_are_masked() {
        assert_eq!(
            redact_url("postgres://u@h/db?password=hunter2&sslmode=require"),
            "postgres://u@h/db?password=***&sslmode=require"
        );
        for name in [
            "password",
            "PASSWORD",
            "pass",
            "pwd",
            "passwd",
            "secret",
            "client_secret",
            "token",
            "access_token",
            "refresh-token",
            "key",
            "api_key",
            "apiKey",
            "sslpassword",
            "pass%77ord",
            "authorization",
            "sig",
        ] {
            let url = format!("https://h/x?a=1&{name}=hunter2#top");
            let out = redact_url(&url);
            assert!(!out.contains("hunter2"), "{name}: {out}");
            assert!(out.ends_with("#top") && out.contains("a=1"), "{out}");
        }
        for name in [
            "sslmode",
            "user",
            "authSource",
            "database",
            "keyset",
            "monkey",
        ] {
            let url = format!("https://h/x?{name}=kept");
            assert_eq!(redact_url(&url), url, "{name}");
        }
    }
}
