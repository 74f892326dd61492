//! Simple glob patterns for names and argument values: `*` matches any run
//! of characters (including none), `?` exactly one character; everything
//! else matches itself exactly (no case folding, no character classes).

/// Whether `text` matches `pattern` (iterative, linear-space, no recursion).
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some(&c) if c == '?' || Some(&c) == t.get(ti) => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    pi = sp + 1;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    p.get(pi..).unwrap_or(&[]).iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn matches_globs() {
        assert!(glob_match("run_*", "run_python"));
        assert!(glob_match("*", ""));
        assert!(glob_match("a?c", "abc"));
        assert!(glob_match("*rm -rf*", "x; rm -rf /"));
        assert!(glob_match("*.*.*", "a.b.c"));
        assert!(!glob_match("run_*", "Run_python"));
        assert!(!glob_match("a?c", "ac"));
        assert!(!glob_match("echo", "echo2"));
        assert!(glob_match("é*", "été"));
    }
}
