//! The status page a node's metrics listener serves on `/`: the report `gscluster status`
//! prints, as one self-contained HTML page — no scripts, styles inline, nothing fetched from
//! elsewhere (it works on an air-gapped site) — that reloads itself and reads on a phone (the
//! table becomes one card per node on a narrow screen).

use super::report::{row, Report, HEADINGS};

/// How often the page reloads itself, seconds.
pub const REFRESH_S: u32 = 5;

/// The page for report `r`, as node `from` sees the group.
pub fn html(r: &Report, from: &str) -> String {
    let mut out = String::with_capacity(8 * 1024);
    let title = format!("gscluster — group {}", r.group);
    out += "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n";
    out += "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n";
    out += &format!("<meta http-equiv=\"refresh\" content=\"{REFRESH_S}\">\n");
    out += &format!(
        "<title>{}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n",
        esc(&title)
    );
    out += &format!("<h1>{}</h1>\n", esc(&title));
    out += &format!(
        "<p class=\"meta\">{} node(s), seen by <b>{}</b> via {} at {}; refreshed every {REFRESH_S} s</p>\n",
        r.nodes.len(),
        esc(from),
        esc(&r.broker),
        esc(&crate::history::time::format(r.at_unix_ms)),
    );
    if r.problems.is_empty() {
        out += "<p class=\"verdict good\">No problems</p>\n";
    } else {
        out += &format!(
            "<p class=\"verdict bad\">{} problem(s)</p>\n<ul class=\"problems\">\n",
            r.problems.len()
        );
        for p in &r.problems {
            out += &format!("<li>{}</li>\n", esc(p));
        }
        out += "</ul>\n";
    }
    out += "<table>\n<thead><tr>";
    for h in HEADINGS {
        out += &format!("<th>{}</th>", esc(&heading(h)));
    }
    out += "</tr></thead>\n<tbody>\n";
    for n in &r.nodes {
        let cells = row(n, r.at_unix_ms);
        let state = cells[2].to_lowercase();
        out += &format!(
            "<tr class=\"{}\" id=\"node-{}\">",
            esc(&state),
            esc(&n.node)
        );
        for (h, c) in HEADINGS.iter().zip(&cells) {
            out += &format!("<td data-label=\"{}\">{}</td>", esc(&heading(h)), esc(c));
        }
        out += "</tr>\n";
    }
    out += "</tbody>\n</table>\n";
    out += "<p class=\"meta\">The same as <code>gscluster status</code>; as JSON: \
            <a href=\"status.json\">status.json</a>; metrics: <a href=\"metrics\">metrics</a>.</p>\n";
    out += "</body>\n</html>\n";
    out
}

/// "APPLIED (LAG)" → "Applied (lag)".
fn heading(h: &str) -> String {
    let lower = h.to_lowercase();
    let mut chars = lower.chars();
    chars.next().map_or(String::new(), |c| {
        c.to_uppercase().collect::<String>() + chars.as_str()
    })
}

/// Text made safe inside an element or a quoted attribute.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out += "&amp;",
            '<' => out += "&lt;",
            '>' => out += "&gt;",
            '"' => out += "&quot;",
            '\'' => out += "&#39;",
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:1rem;color:#1b1f23;background:#fff}
h1{font-size:1.3rem;margin:0 0 .3rem}
.meta{color:#57606a;font-size:.85rem}
.verdict{font-weight:600;padding:.4rem .7rem;border-radius:.3rem;display:inline-block}
.good{background:#dafbe1;color:#116329}.bad{background:#ffebe9;color:#a40e26}
.problems{color:#a40e26}
table{border-collapse:collapse;width:100%;font-size:.85rem}
th,td{text-align:left;padding:.35rem .5rem;border-bottom:1px solid #d0d7de;vertical-align:top}
th{background:#f6f8fa}
tr.offline td{color:#a40e26}tr.lagging td{color:#9a6700}
tr.offline td[data-label=State],tr.lagging td[data-label=State]{font-weight:700}
tr.online td[data-label=State]{color:#116329;font-weight:600}
@media (max-width:700px){
 thead{display:none}
 table,tbody,tr,td{display:block;width:100%}
 tr{border:1px solid #d0d7de;border-radius:.4rem;margin:0 0 .8rem;padding:.3rem}
 td{border:none;padding:.2rem .3rem;box-sizing:border-box}
 td::before{content:attr(data-label);display:inline-block;min-width:7.5rem;color:#57606a;font-weight:600}
}
";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::report::{report, Limits};
    use crate::status::Status;

    #[test]
    fn the_page_lists_every_node_with_its_state_and_escapes_what_nodes_say() {
        let master = Status::new("gs-master", "master", true, 1, 12);
        let mut slave = Status::new("gs-slave-<b>", "slave", false, 2, 0);
        slave.last_error = Some("reload failed: \"500\" & <html>".into());
        let limits = Limits::default();
        let r = report(
            "g1",
            "mqtt://b:1883",
            &[master, slave],
            1_796_659_509_000,
            limits,
        );
        let page = html(&r, "gs-master");
        assert!(
            page.contains("<tr class=\"online\" id=\"node-gs-master\">"),
            "{page}"
        );
        assert!(page.contains("<tr class=\"offline\" id=\"node-gs-slave-&lt;b&gt;\">"));
        assert!(page.contains("reload failed: &quot;500&quot; &amp; &lt;html&gt;"));
        assert!(!page.contains("<html>\""), "nothing a node says is markup");
        assert!(page.contains("problem(s)</p>"));
        assert!(page.contains("2026-12-07T16:05:09Z"), "{page}");
        assert!(
            !page.contains("http://") && !page.contains("https://"),
            "no external assets"
        );
    }
}
