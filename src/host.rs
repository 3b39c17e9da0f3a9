//! Names of hosts' pools (config `host`, `CANHAZGPU_HOST`, the `[hosts]` table,
//! `status --host NAME`), checked once where they enter so that every key built from one
//! is well formed: a name becomes part of Redis keys (`canhazgpu:{NAME}:gpu:3`), where a
//! brace, colon or space would break the hash tag or the key layout.

use std::fmt;

/// The environment variable that names this host's pool (config `host`).
pub const HOST_ENV: &str = "CANHAZGPU_HOST";

/// As DNS labels: long enough for any host name, short enough for a key and a header.
const MAX_LEN: usize = 63;

/// A checked host name: letters, digits, `.`, `_` and `-`, starting with a letter or a
/// digit, at most 63 characters.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HostName(String);

impl HostName {
    /// `what` names where the name came from, for the message (e.g. "`host` in
    /// /etc/canhazgpu/config.toml").
    pub fn parse(name: &str, what: &str) -> Result<HostName, String> {
        match problem(name) {
            None => Ok(HostName(name.to_string())),
            Some(why) => Err(format!(
                "{what}: {} is not a valid host name ({why}); use letters, digits, '.', '_' \
                 and '-', starting with a letter or digit, at most {MAX_LEN} characters, \
                 e.g. gpu7",
                quoted(name)
            )),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for HostName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What is wrong with `name`, if anything.
fn problem(name: &str) -> Option<String> {
    let Some(first) = name.chars().next() else {
        return Some("it is empty".to_string());
    };
    if name.len() > MAX_LEN {
        return Some(format!("it has {} characters", name.chars().count()));
    }
    if !first.is_ascii_alphanumeric() {
        return Some(format!("it starts with {}", quoted(&first.to_string())));
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    name.chars()
        .find(|&c| !allowed(c))
        .map(|c| format!("it contains {}", quoted(&c.to_string())))
}

/// The name as a message shows it: control characters escaped, so that a name with a
/// newline or an escape sequence cannot forge lines on the terminal.
fn quoted(text: &str) -> String {
    format!("{text:?}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_the_documented_alphabet() {
        for name in ["gpu7", "a", "7", "gpu-7.lab_b", &"x".repeat(63)] {
            assert_eq!(HostName::parse(name, "test").unwrap().as_str(), name);
        }
    }

    #[test]
    fn refuses_with_the_reason() {
        let cases = [
            ("", "empty"),
            ("-gpu", "starts with \"-\""),
            (".gpu", "starts with"),
            ("gpu{7}", "contains \"{\""),
            ("gpu:7", "contains \":\""),
            ("gpu 7", "contains \" \""),
            ("gpu\n7", "contains \"\\n\""),
            ("gpü", "contains \"ü\""),
        ];
        for (name, why) in cases {
            let message = HostName::parse(name, "`host`").unwrap_err();
            assert!(message.contains(why), "{name:?}: {message}");
            assert!(message.starts_with("`host`: "), "{message}");
            assert!(!message.contains('\n'), "{message}");
        }
        let long = HostName::parse(&"x".repeat(64), "t").unwrap_err();
        assert!(long.contains("64 characters"), "{long}");
    }

    proptest! {
        #[test]
        fn a_valid_name_never_holds_key_syntax(name in "\\PC{0,70}") {
            if let Ok(host) = HostName::parse(&name, "t") {
                let key_syntax = ['{', '}', ':', ' ', '*', '?', '['];
                prop_assert!(!host.as_str().contains(key_syntax), "{}", host);
                prop_assert!(host.as_str().len() <= 63 && !host.as_str().is_empty());
            }
        }
    }
}
