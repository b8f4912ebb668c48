//! The request path, decided once: normalised as RFC 3986 says (percent-encoded unreserved
//! characters decoded, hex digits upper-cased, dot segments resolved) and with repeated slashes
//! collapsed, so that the room a path belongs to and the path the application gets are the same
//! path. A path whose meaning differs between servers is refused: an encoded `/` or `\`, a
//! backslash, a dot segment that would climb above the root, a malformed escape, or a request
//! target that is not a path at all (`CONNECT host:443`, `OPTIONS *`).

use std::fmt::Write as _;

use crate::error::{ApiError, ErrorCode};

/// Why a path is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// The request target is not an absolute path (`*`, an authority, empty).
    NotAPath,
    /// A `%` not followed by two hex digits.
    BadEscape,
    /// `%2F`, `%5C`, a literal `\`, or a dot segment with parameters (`..;x`): one server splits
    /// or climbs there, another does not.
    AmbiguousSeparator,
    /// A `..` with nothing left to climb out of.
    AboveRoot,
}

impl PathError {
    pub fn into_api(self) -> ApiError {
        let message = match self {
            PathError::NotAPath => "the request target is not a path",
            PathError::BadEscape => "a % in the path is not followed by two hex digits",
            PathError::AmbiguousSeparator => {
                "the path has an encoded / or \\, a \\, or a dot segment with parameters: its \
                 meaning depends on the server"
            }
            PathError::AboveRoot => "a .. segment in the path climbs above /",
        };
        ApiError::new(ErrorCode::InvalidPath, message)
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// One segment with unreserved escapes decoded and the others upper-cased.
fn normalise_segment(raw: &str) -> Result<String, PathError> {
    let bytes = raw.as_bytes();
    let mut out = String::with_capacity(raw.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let (Some(hi), Some(lo)) = (
                    bytes.get(i + 1).copied().and_then(hex),
                    bytes.get(i + 2).copied().and_then(hex),
                ) else {
                    return Err(PathError::BadEscape);
                };
                let byte = hi << 4 | lo;
                match byte {
                    b'/' | b'\\' => return Err(PathError::AmbiguousSeparator),
                    b if is_unreserved(b) => out.push(b as char),
                    b => {
                        let _ = write!(out, "%{b:02X}");
                    }
                }
                i += 3;
            }
            b'\\' => return Err(PathError::AmbiguousSeparator),
            b => {
                // The rest of the path is ASCII already (an http::Uri holds no other bytes).
                out.push(b as char);
                i += 1;
            }
        }
    }
    Ok(out)
}

/// The normalised form of a request path (without its query).
pub fn normalise(raw: &str) -> Result<String, PathError> {
    let Some(rest) = raw.strip_prefix('/') else {
        return Err(PathError::NotAPath);
    };
    let mut segments: Vec<String> = Vec::new();
    let mut trailing_slash = raw.len() == 1;
    let parts: Vec<&str> = rest.split('/').collect();
    for (i, part) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        let segment = normalise_segment(part)?;
        // `..;x` is `..` to a server that drops segment parameters, a name to one that does not.
        let bare = without_parameters(&segment);
        if bare.len() < segment.len() && matches!(bare, "." | "..") {
            return Err(PathError::AmbiguousSeparator);
        }
        match segment.as_str() {
            // Repeated slashes collapse; a slash at the end stays.
            "" => trailing_slash |= last,
            "." => trailing_slash |= last,
            ".." => {
                if segments.pop().is_none() {
                    return Err(PathError::AboveRoot);
                }
                trailing_slash |= last;
            }
            _ => {
                segments.push(segment);
                trailing_slash = false;
            }
        }
    }
    let mut path = String::with_capacity(raw.len());
    for segment in &segments {
        path.push('/');
        path.push_str(segment);
    }
    if path.is_empty() || trailing_slash {
        path.push('/');
    }
    Ok(path)
}

/// The path rooms are matched on: the normalised path with each segment's parameters
/// (`;jsessionid=...`) left out, as servers that honour them route on the rest, and the
/// segments that leaves empty dropped.
pub fn match_key(normalised: &str) -> String {
    if !normalised.contains(';') && !normalised.contains("%3B") {
        return normalised.to_owned();
    }
    let segments: Vec<&str> = normalised
        .split('/')
        .map(without_parameters)
        .filter(|segment| !segment.is_empty())
        .collect();
    let mut key = format!("/{}", segments.join("/"));
    if normalised.ends_with('/') && key.len() > 1 {
        key.push('/');
    }
    key
}

/// A normalised segment without its parameters: cut at the first `;`, or at an encoded one (a
/// server that decodes before it looks for parameters cuts there too).
fn without_parameters(segment: &str) -> &str {
    let cut = [segment.find(';'), segment.find("%3B")]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(segment.len());
    &segment[..cut]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_normalised() {
        for (raw, want) in [
            ("/", "/"),
            ("/h/x", "/h/x"),
            ("/%68/x", "/h/x"),
            ("//h/x", "/h/x"),
            ("/h//x//", "/h/x/"),
            ("/x/../h/x", "/h/x"),
            ("/h/./x", "/h/x"),
            ("/h/x/.", "/h/x/"),
            ("/h/x/..", "/h/"),
            ("/a/%2e%2e/h", "/h"),
            ("/h/a%20b", "/h/a%20b"),
            ("/h/a%c3%a9", "/h/a%C3%A9"),
            ("/h/%7e%41", "/h/~A"),
            ("/..a/b..", "/..a/b.."),
        ] {
            assert_eq!(normalise(raw).as_deref(), Ok(want), "{raw}");
        }
    }

    #[test]
    fn ambiguous_paths_are_refused() {
        for (raw, why) in [
            ("/h%2fx", PathError::AmbiguousSeparator),
            ("/h%2Fx", PathError::AmbiguousSeparator),
            ("/h%5cx", PathError::AmbiguousSeparator),
            ("/h\\x", PathError::AmbiguousSeparator),
            ("/..", PathError::AboveRoot),
            ("/a/../../h", PathError::AboveRoot),
            ("/%2e%2e/h", PathError::AboveRoot),
            ("/h%", PathError::BadEscape),
            ("/h%zz", PathError::BadEscape),
            ("/h%2", PathError::BadEscape),
            ("/x/..;/h/x", PathError::AmbiguousSeparator),
            ("/.;/h", PathError::AmbiguousSeparator),
            ("/%2e%2e;a=b/h", PathError::AmbiguousSeparator),
            ("/..%3b/h", PathError::AmbiguousSeparator),
            ("*", PathError::NotAPath),
            ("", PathError::NotAPath),
            ("example.com:443", PathError::NotAPath),
        ] {
            assert_eq!(normalise(raw), Err(why), "{raw}");
        }
    }

    #[test]
    fn rooms_match_without_segment_parameters() {
        assert_eq!(match_key("/h;jsessionid=1/x"), "/h/x");
        assert_eq!(match_key("/h/x;a=b"), "/h/x");
        assert_eq!(match_key("/h/x"), "/h/x");
        assert_eq!(match_key("/;/h"), "/h");
        assert_eq!(match_key("/;x/h;y/"), "/h/");
        assert_eq!(match_key("/h%3Bx/y"), "/h/y");
    }
}
