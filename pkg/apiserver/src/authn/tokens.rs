//! The static token file (`--token-auth-file`): CSV lines `token,user,uid,"group1,group2"`.

use std::collections::HashMap;
use std::path::Path;

use super::UserInfo;

/// Split one CSV line, honouring double quotes.
fn fields(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    out.push(cur);
    out.into_iter().map(|f| f.trim().to_string()).collect()
}

/// Read a token file; an unreadable file or a line without token and user is an error
/// naming the line.
pub fn load_token_file(path: &Path) -> Result<HashMap<String, UserInfo>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("reading the token file {}: {e}", path.display()))?;
    let mut out = HashMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let f = fields(line);
        if f.len() < 2 || f[0].is_empty() || f[1].is_empty() {
            return Err(format!(
                "{}:{}: a token line needs at least a token and a user name",
                path.display(),
                n + 1
            ));
        }
        let groups = f
            .get(3)
            .map(|g| {
                g.split(',')
                    .map(str::trim)
                    .filter(|g| !g.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        out.insert(
            f[0].clone(),
            UserInfo {
                name: f[1].clone(),
                uid: f.get(2).cloned().unwrap_or_default(),
                groups,
            },
        );
    }
    Ok(out)
}
