//! `$(VAR)` references, as Kubernetes expands them in env values, command, args and
//! subPathExpr (third_party/forked/golang/expansion): `$(NAME)` becomes the variable's
//! value, an unknown one stays as written, `$$` is a literal `$`; and the argv a container
//! runs, from its image's entrypoint and cmd and the pod's command and args.

/// Expand `$(VAR)` in `input`, looking names up with `lookup`.
pub fn expand(input: &str, lookup: &dyn Fn(&str) -> Option<String>) -> String {
    let bytes = input.as_bytes();
    let mut out = String::with_capacity(input.len());
    let mut checkpoint = 0;
    let mut cursor = 0;
    while cursor < bytes.len() {
        if bytes[cursor] == b'$' && cursor + 1 < bytes.len() {
            out.push_str(&input[checkpoint..cursor]);
            let rest = &input[cursor + 1..];
            let advance = match rest.as_bytes()[0] {
                b'$' => {
                    out.push('$');
                    1
                }
                b'(' => match rest.find(')') {
                    Some(close) => {
                        let name = &rest[1..close];
                        match lookup(name) {
                            Some(v) => out.push_str(&v),
                            None => {
                                out.push_str("$(");
                                out.push_str(name);
                                out.push(')');
                            }
                        }
                        close + 1
                    }
                    // An unclosed reference: kept as written.
                    None => {
                        out.push_str("$(");
                        1
                    }
                },
                _ => {
                    // "$" before anything else is itself, with that character.
                    let c = rest.chars().next().unwrap_or_default();
                    out.push('$');
                    out.push(c);
                    c.len_utf8()
                }
            };
            cursor += advance;
            checkpoint = cursor + 1;
        }
        cursor += 1;
    }
    if checkpoint < input.len() {
        out.push_str(&input[checkpoint..]);
    }
    out
}

/// The argv: `command` replaces the image's entrypoint and drops its cmd; `args` replaces
/// the cmd. Both are expanded first (containerd's rules after the kubelet's expansion).
pub fn argv(
    entrypoint: &[String],
    cmd: &[String],
    command: &[String],
    args: &[String],
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Vec<String> {
    let command: Vec<String> = command.iter().map(|c| expand(c, lookup)).collect();
    let args: Vec<String> = args.iter().map(|a| expand(a, lookup)).collect();
    if !command.is_empty() {
        return command.into_iter().chain(args).collect();
    }
    let args = if args.is_empty() { cmd.to_vec() } else { args };
    let entry: &[String] = if entrypoint.len() == 1 && entrypoint[0].is_empty() {
        &[]
    } else {
        entrypoint
    };
    entry.iter().cloned().chain(args).collect()
}

/// Merge "KEY=value" lists as containerd does: a later key replaces an earlier one in place,
/// new keys are appended.
pub fn merge_env(lists: &[&[String]]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut index = std::collections::HashMap::new();
    for entry in lists.iter().flat_map(|l| l.iter()) {
        let key = entry.split_once('=').map_or(entry.as_str(), |(k, _)| k);
        match index.get(key) {
            Some(&i) => out[i] = entry.clone(),
            None => {
                index.insert(key.to_string(), out.len());
                out.push(entry.clone());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(name: &str) -> Option<String> {
        match name {
            "A" => Some("a".into()),
            "EMPTY" => Some(String::new()),
            _ => None,
        }
    }

    #[test]
    fn references_expand_as_kubernetes_does() {
        let e = |s: &str| expand(s, &vars);
        assert_eq!(e("$(A)-$(A)"), "a-a");
        assert_eq!(e("x$(EMPTY)y"), "xy");
        assert_eq!(e("$(MISSING)"), "$(MISSING)");
        assert_eq!(e("$$(A)"), "$(A)");
        assert_eq!(e("$$$(A)"), "$a");
        assert_eq!(e("cost $5"), "cost $5");
        assert_eq!(e("$(A"), "$(A");
        assert_eq!(e("end$"), "end$");
        assert_eq!(e("é$(A)ü"), "éaü");
        assert_eq!(e(""), "");
    }

    #[test]
    fn command_replaces_entrypoint_and_args_replace_cmd() {
        let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let (ep, cmd) = (s(&["/entry"]), s(&["serve", "--x"]));
        assert_eq!(
            argv(&ep, &cmd, &[], &[], &vars),
            s(&["/entry", "serve", "--x"])
        );
        assert_eq!(
            argv(&ep, &cmd, &[], &s(&["run"]), &vars),
            s(&["/entry", "run"])
        );
        assert_eq!(argv(&ep, &cmd, &s(&["sh"]), &[], &vars), s(&["sh"]));
        assert_eq!(
            argv(&ep, &cmd, &s(&["echo"]), &s(&["$(A)", "$$(A)"]), &vars),
            s(&["echo", "a", "$(A)"])
        );
        assert_eq!(argv(&s(&[""]), &cmd, &[], &[], &vars), s(&["serve", "--x"]));
    }

    #[test]
    fn later_env_entries_replace_earlier_ones_in_place() {
        let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let image = s(&["PATH=/bin", "A=1"]);
        let pod = s(&["B=2", "PATH=/usr/bin"]);
        assert_eq!(
            merge_env(&[&image, &pod]),
            s(&["PATH=/usr/bin", "A=1", "B=2"])
        );
    }
}
