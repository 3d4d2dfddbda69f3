//! Finds the line and column of a key path (`server.backends[1].addr`) in YAML text, so that
//! validation errors (found after serde has thrown positions away) still point at the line.
//! It understands block mappings and block sequences, which is how configs are written; inside
//! flow collections (`{a: 1}`) it stops at the deepest key it could find.

/// One step of a key path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    Key(String),
    Index(usize),
}

pub(crate) fn parse_path(path: &str) -> Vec<Step> {
    let mut steps = Vec::new();
    for part in path.split('.') {
        let (key, mut rest) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !key.is_empty() {
            steps.push(Step::Key(key.to_string()));
        }
        while let Some(end) = rest.find(']') {
            if let Ok(i) = rest[1..end].parse() {
                steps.push(Step::Index(i));
            }
            rest = &rest[end + 1..];
        }
    }
    steps
}

/// camelCase and snake_case spellings compare equal; `listen` is the alias of `listenAddr`.
pub(crate) fn key_matches(written: &str, wanted: &str) -> bool {
    let norm = |s: &str| -> String {
        s.chars()
            .filter(|c| *c != '_' && *c != '-')
            .flat_map(|c| c.to_lowercase())
            .collect()
    };
    let (w, k) = (norm(written), norm(wanted));
    w == k
        || (k == "listenaddr" && w == "listen")
        || (k == "httplistenaddr" && w == "httplisten")
        || (k == "pathprefix" && w == "prefix")
        || (k == "addr" && w == "address")
}

struct Line<'a> {
    number: usize,
    indent: usize,
    text: &'a str,
}

fn significant_lines(text: &str) -> Vec<Line<'_>> {
    text.lines()
        .enumerate()
        .filter_map(|(i, raw)| {
            let trimmed = raw.trim_start();
            if trimmed.is_empty() || trimmed.starts_with('#') || trimmed == "---" {
                return None;
            }
            Some(Line {
                number: i + 1,
                indent: raw.len() - trimmed.len(),
                text: trimmed,
            })
        })
        .collect()
}

/// The key written at the start of `text` (`name:` or `"name":`), if any.
fn leading_key(text: &str) -> Option<&str> {
    let colon = text.find(':')?;
    let key = text[..colon].trim().trim_matches(|c| c == '"' || c == '\'');
    if key.is_empty() || key.contains(' ') && !text.starts_with(['"', '\'']) {
        return None;
    }
    Some(key)
}

/// Line and column (1-based) of the deepest part of `path` found in `text`.
pub fn locate(text: &str, path: &str) -> Option<(usize, usize)> {
    let lines = significant_lines(text);
    let steps = parse_path(path);
    let mut found = None;
    // The window of lines [start, end) at a given indentation that belongs to the current node.
    let (mut start, mut end, mut min_indent) = (0usize, lines.len(), 0usize);
    for step in steps {
        let mut hit = None;
        match &step {
            Step::Key(k) => {
                // Only keys of this node count, not a deeper key of the same name (a route's
                // `cors:` before the top-level `cors:`): the node's keys sit at the column of
                // its first line.
                let mut level = None;
                for (i, l) in lines.iter().enumerate().take(end).skip(start) {
                    if l.indent < min_indent {
                        break;
                    }
                    let body = l.text.strip_prefix("- ").unwrap_or(l.text);
                    let col = l.indent + (l.text.len() - body.len());
                    if col > *level.get_or_insert(col) {
                        continue;
                    }
                    if let Some(key) = leading_key(body) {
                        if key_matches(key, k) {
                            hit = Some((i, col));
                            break;
                        }
                    }
                }
            }
            Step::Index(n) => {
                let mut count = 0;
                let mut item_indent = None;
                for (i, l) in lines.iter().enumerate().take(end).skip(start) {
                    if l.indent < min_indent {
                        break;
                    }
                    if l.text.starts_with("- ") || l.text == "-" {
                        let ind = *item_indent.get_or_insert(l.indent);
                        if l.indent == ind {
                            if count == *n {
                                hit = Some((i, l.indent));
                                break;
                            }
                            count += 1;
                        }
                    }
                }
            }
        }
        let Some((i, col)) = hit else { break };
        found = Some((lines[i].number, col + 1));
        // The node's children are the following lines indented deeper than its key (a
        // sequence item's inline key counts from the dash).
        let own_indent = col;
        let mut j = i + 1;
        while j < end && lines[j].indent > own_indent {
            j += 1;
        }
        // A sequence item's first key sits on the dash line itself; include it.
        start = if matches!(step, Step::Index(_)) {
            i
        } else {
            i + 1
        };
        end = j;
        min_indent = if matches!(step, Step::Index(_)) {
            own_indent
        } else {
            own_indent + 1
        };
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    const YAML: &str = "\
server:
  listen: \":8080\"
  backends:
    - addr: \"a:1\"
    - addr: \"b:2\"
      weight: 3
  health:
    interval: 5s
routes:
  - name: api
    match:
      path_prefix: /api
";

    #[test]
    fn finds_nested_keys_and_items() {
        assert_eq!(locate(YAML, "server.listenAddr"), Some((2, 3)));
        assert_eq!(locate(YAML, "server.backends[1].addr"), Some((5, 7)));
        assert_eq!(locate(YAML, "server.backends[1].weight"), Some((6, 7)));
        assert_eq!(locate(YAML, "server.health.interval"), Some((8, 5)));
        assert_eq!(locate(YAML, "routes[0].match.pathPrefix"), Some((12, 7)));
    }

    #[test]
    fn a_deeper_key_of_the_same_name_is_not_the_node_s_own() {
        let yaml =
            "routes:\n  - name: api\n    cors: true\ncors:\n  allowedOrigins:\n    - \"*\"\n";
        assert_eq!(locate(yaml, "cors.allowedOrigins[0]"), Some((6, 5)));
        assert_eq!(locate(yaml, "cors"), Some((4, 1)));
        assert_eq!(locate(yaml, "routes[0].cors"), Some((3, 5)));
    }

    #[test]
    fn falls_back_to_the_deepest_known_key() {
        assert_eq!(locate(YAML, "server.health.timeout"), Some((7, 3)));
        assert_eq!(locate(YAML, "upstreams.x"), None);
    }
}
