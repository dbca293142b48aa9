//! The `minik image ls` table, shaped like `crictl images`: IMAGE, TAG, IMAGE ID (13 hex
//! digits), SIZE (decimal units, 4 significant digits, like docker's go-units HumanSize).

use super::reference::Reference;
use crate::types::Image;

/// One row per tag; an image without tags shows its digest references' repository (or
/// `<none>`) with tag `<none>`.
pub fn image_table(images: &[Image]) -> String {
    let mut rows: Vec<[String; 4]> = vec![[
        "IMAGE".into(),
        "TAG".into(),
        "IMAGE ID".into(),
        "SIZE".into(),
    ]];
    for i in images {
        let id: String =
            i.id.trim_start_matches("sha256:")
                .chars()
                .take(13)
                .collect();
        let size = human_size(i.size);
        let mut named = false;
        for t in &i.repo_tags {
            if let Ok(r) = Reference::parse(t) {
                rows.push([
                    r.name(),
                    r.tag.unwrap_or_else(|| "<none>".into()),
                    id.clone(),
                    size.clone(),
                ]);
                named = true;
            }
        }
        if !named {
            let repo = i
                .repo_digests
                .first()
                .and_then(|d| d.split_once('@'))
                .map(|(n, _)| n.to_string())
                .unwrap_or_else(|| "<none>".into());
            rows.push([repo, "<none>".into(), id, size]);
        }
    }
    let widths: Vec<usize> = (0..4)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for r in &rows {
        let line: Vec<String> = (0..4)
            .map(|c| {
                if c == 3 {
                    r[c].clone()
                } else {
                    format!("{:<w$}", r[c], w = widths[c])
                }
            })
            .collect();
        out.push_str(line.join("   ").trim_end());
        out.push('\n');
    }
    out
}

/// 2140160 -> "2.14MB", 999 -> "999B" (go-units HumanSize: decimal, 4 significant digits).
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 9] = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"];
    let mut size = bytes as f64;
    let mut unit = 0;
    while size >= 1000.0 && unit < UNITS.len() - 1 {
        size /= 1000.0;
        unit += 1;
    }
    // %.4g: four significant digits, trailing zeros dropped.
    let digits = if size >= 100.0 {
        1
    } else if size >= 10.0 {
        2
    } else {
        3
    };
    let s = format!("{size:.digits$}");
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    };
    format!("{s}{}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_like_go_units() {
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(1000), "1kB");
        assert_eq!(human_size(2_140_160), "2.14MB");
        assert_eq!(human_size(1_031_460), "1.031MB");
        assert_eq!(human_size(123_456_789), "123.5MB");
        assert_eq!(human_size(5_000_000_000), "5GB");
    }

    #[test]
    fn table_like_crictl() {
        let id = format!("sha256:{}", "ab".repeat(32));
        let images = vec![
            Image {
                id: id.clone(),
                repo_tags: vec![
                    "docker.io/library/busybox:latest".into(),
                    "127.0.0.1:5000/busybox:v1".into(),
                ],
                repo_digests: vec![],
                size: 1_031_460,
            },
            Image {
                id,
                repo_tags: vec![],
                repo_digests: vec![format!("docker.io/minik/httpd@sha256:{}", "cd".repeat(32))],
                size: 12,
            },
        ];
        let t = image_table(&images);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(
            lines[0],
            "IMAGE                       TAG      IMAGE ID        SIZE"
        );
        assert_eq!(
            lines[1],
            "docker.io/library/busybox   latest   ababababababa   1.031MB"
        );
        assert_eq!(
            lines[2],
            "127.0.0.1:5000/busybox      v1       ababababababa   1.031MB"
        );
        assert_eq!(
            lines[3],
            "docker.io/minik/httpd       <none>   ababababababa   12B"
        );
    }
}
