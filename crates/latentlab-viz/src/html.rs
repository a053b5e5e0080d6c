//! A self-contained HTML page: sections of text, tables, inline SVG and
//! embedded PNG images (data URIs), no scripts and no external requests.

use std::fmt::Write;

use crate::{base64, escape};

/// An HTML report under construction.
#[derive(Default)]
pub struct Page {
    title: String,
    body: String,
}

impl Page {
    /// A page with a title.
    pub fn new(title: &str) -> Self {
        Self {
            title: title.to_string(),
            body: String::new(),
        }
    }

    /// A section heading.
    pub fn heading(&mut self, text: &str) {
        let _ = write!(self.body, "<h2>{}</h2>", escape(text));
    }

    /// A paragraph of plain text.
    pub fn para(&mut self, text: &str) {
        let _ = write!(self.body, "<p>{}</p>", escape(text));
    }

    /// A verdict box.
    pub fn callout(&mut self, text: &str, good: bool) {
        let _ = write!(
            self.body,
            r#"<p class="callout {}">{}</p>"#,
            if good { "good" } else { "bad" },
            escape(text)
        );
    }

    /// A two-column table of names and values.
    pub fn table(&mut self, rows: &[(String, String)]) {
        self.body.push_str("<table>");
        for (k, v) in rows {
            let _ = write!(
                self.body,
                "<tr><th>{}</th><td>{}</td></tr>",
                escape(k),
                escape(v)
            );
        }
        self.body.push_str("</table>");
    }

    /// A table with a header row: `columns` over rows of a name and cells.
    pub fn matrix(&mut self, columns: &[String], rows: &[(String, Vec<String>)]) {
        self.body.push_str("<table><tr><th></th>");
        for c in columns {
            let _ = write!(self.body, "<th>{}</th>", escape(c));
        }
        self.body.push_str("</tr>");
        for (name, cells) in rows {
            let _ = write!(self.body, "<tr><th>{}</th>", escape(name));
            for c in cells {
                let _ = write!(self.body, "<td>{}</td>", escape(c));
            }
            self.body.push_str("</tr>");
        }
        self.body.push_str("</table>");
    }

    /// An inline SVG figure with a caption.
    pub fn svg(&mut self, svg: &str, caption: &str) {
        let _ = write!(
            self.body,
            "<figure>{svg}<figcaption>{}</figcaption></figure>",
            escape(caption)
        );
    }

    /// A PNG figure embedded as a data URI, with alt text and a caption.
    pub fn png(&mut self, png: &[u8], caption: &str) {
        let _ = write!(
            self.body,
            r#"<figure><img alt="{0}" src="data:image/png;base64,{1}"><figcaption>{0}</figcaption></figure>"#,
            escape(caption),
            base64(png)
        );
    }

    /// The finished document.
    pub fn render(&self) -> String {
        format!(
            r#"<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{0}</title><style>
body{{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}}
h1{{font-size:1.6em}}h2{{margin-top:2em;border-bottom:1px solid #ddd}}
figure{{display:inline-block;margin:0.5em;vertical-align:top}}figcaption{{font-size:0.85em;color:#555;max-width:640px}}
img{{image-rendering:pixelated;border:1px solid #ccc}}table{{border-collapse:collapse}}
th,td{{text-align:left;padding:2px 12px;border-bottom:1px solid #eee}}
.callout{{padding:0.8em;border-radius:4px}}.good{{background:#e6f4ea}}.bad{{background:#fde8e8}}
</style></head><body><h1>{0}</h1>{1}</body></html>"#,
            escape(&self.title),
            self.body
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_embeds_everything() {
        let mut p = Page::new("report & more");
        p.heading("Diagnosis");
        p.callout("HEALTHY", true);
        p.table(&[("mean KL".into(), "15.98".into())]);
        p.matrix(&["a<b".into()], &[("row".into(), vec!["1 & 2".into()])]);
        p.png(&crate::png::encode(1, 1, 1, &[255]), "one pixel");
        p.svg(
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="1" height="1"></svg>"#,
            "empty",
        );
        let h = p.render();
        assert!(h.starts_with("<!DOCTYPE html>") && h.contains("report &amp; more"));
        assert!(h.contains("<th>a&lt;b</th>") && h.contains("<td>1 &amp; 2</td>"));
        assert!(h.contains("data:image/png;base64,iVBORw0KGgo"));
        assert!(self_contained(&h), "{h}");
        assert!(!h.contains("<script"));
    }

    /// No address outside the page: the only `http` allowed is an SVG
    /// namespace name, which is never fetched.
    fn self_contained(h: &str) -> bool {
        let rest = h.replace(r#"xmlns="http://www.w3.org/2000/svg""#, "");
        !rest.contains("http:")
            && !rest.contains("https:")
            && !rest.contains("url(")
            && !rest.contains("<link")
            && rest
                .match_indices("src=\"")
                .all(|(i, m)| rest[i + m.len()..].starts_with("data:"))
    }

    #[test]
    fn external_references_are_caught() {
        for bad in [
            r#"<img src="http://example.com/a.png">"#,
            r#"<img src="a.png">"#,
            r#"<link rel="stylesheet" href="s.css">"#,
            "<div style=\"background:url(x.png)\"></div>",
        ] {
            assert!(!self_contained(bad), "{bad}");
        }
        assert!(self_contained(
            r#"<svg xmlns="http://www.w3.org/2000/svg"></svg>"#
        ));
    }
}
