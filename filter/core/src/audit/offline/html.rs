//! The crypto inventory as one self-contained HTML page (`pqguard audit
//! report --html FILE`): inline SVG charts and CSS, no script, nothing
//! fetched at view time. Every name that came from a log (identities,
//! groups, algorithms) is HTML-escaped: a token's `sub` is attacker input.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::inventory::{IdentityUsage, Inventory};

const PQ: &str = "#2e7d32";
const COMPOSITE: &str = "#00838f";
const CLASSICAL: &str = "#c62828";
const NONE: &str = "#9e9e9e";

/// Escapes text for HTML element content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The strength class of a key-exchange class name, as a colour and a CSS class.
fn kex_colour(class: &str) -> (&'static str, &'static str) {
    match class {
        "pq" | "hybrid-pq" => (PQ, "pq"),
        "classical" => (CLASSICAL, "classical"),
        _ => (NONE, "none"),
    }
}

/// The colour and CSS class of a token algorithm.
fn alg_colour(alg: &str) -> (&'static str, &'static str) {
    if alg.starts_with("ML-DSA")
        && alg.contains('-')
        && (alg.ends_with("Ed25519") || alg.ends_with("ES256"))
    {
        (COMPOSITE, "composite")
    } else if alg.starts_with("ML-DSA") {
        (PQ, "pq")
    } else if alg == "none" {
        (NONE, "none")
    } else {
        (CLASSICAL, "classical")
    }
}

/// A horizontal stacked bar (260 x 18) of `parts`, largest first, with a legend.
fn bar(
    kind: &str,
    parts: &BTreeMap<String, u64>,
    colour: fn(&str) -> (&'static str, &'static str),
) -> String {
    let total: u64 = parts.values().sum();
    let mut sorted: Vec<(&String, &u64)> = parts.iter().collect();
    sorted.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    let mut svg = format!(r#"<svg class="bar {kind}" width="260" height="18" role="img">"#);
    let mut x = 0.0;
    let mut legend = String::new();
    for (name, n) in &sorted {
        let (fill, class) = colour(name);
        let w = if total == 0 {
            0.0
        } else {
            400.0 * (**n as f64) / (total as f64)
        };
        let _ = write!(
            svg,
            r#"<rect class="{kind}-{class}" x="{x:.1}" y="0" width="{w:.1}" height="18" fill="{fill}"><title>{} {n}</title></rect>"#,
            escape(name)
        );
        x += w;
        let _ = write!(
            legend,
            r#"<span class="key" style="color:{fill}">&#9632;</span> {} {n} "#,
            escape(name)
        );
    }
    svg.push_str("</svg>");
    format!("{svg}<div class=\"legend\">{legend}</div>")
}

/// The class of a caller's key exchanges, for sorting: classical stragglers first.
fn straggler_rank(u: &IdentityUsage) -> (u8, u64) {
    let classical = u.kex_classes.get("classical").copied().unwrap_or(0)
        + u.kex_classes.get("none").copied().unwrap_or(0);
    (u8::from(u.classical.is_empty()), u64::MAX - classical)
}

fn utc(ms: u64) -> String {
    // Civil date from days since the epoch (Howard Hinnant's algorithm).
    let secs = ms / 1000;
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60
    )
}

impl Inventory {
    /// One self-contained HTML page: callers (classical stragglers first)
    /// with their key exchanges and token algorithms, requests over time by
    /// key-exchange class, refusals and alerts.
    pub fn to_html(&self) -> String {
        let mut h = String::new();
        let first = self.identities.values().filter_map(|u| u.first_ms).min();
        let last = self.identities.values().filter_map(|u| u.last_ms).max();
        let stragglers = self.classical().count();
        let _ = write!(
            h,
            r#"<!doctype html><html lang="en"><head><meta charset="utf-8"><title>pqguard crypto inventory</title>
<style>
body{{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222}} h1{{margin:0 0 4px}} h2{{margin-top:28px}}
table{{border-collapse:collapse}} td,th{{padding:6px 10px;border-bottom:1px solid #ddd;vertical-align:top;text-align:left}}
.legend{{font-size:12px;color:#555}} .straggler td:first-child{{border-left:4px solid {CLASSICAL}}}
.ok td:first-child{{border-left:4px solid {PQ}}} .muted{{color:#777}}
</style></head><body>
<h1>pqguard crypto inventory</h1>
<p class="summary">{} decision records, {} callers; <strong>{stragglers}</strong> still use classical cryptography. {}</p>
"#,
            self.decisions,
            self.identities.len(),
            match (first, last) {
                (Some(a), Some(b)) => format!("From {} to {}.", utc(a), utc(b)),
                _ => String::new(),
            }
        );
        let _ = write!(
            h,
            r#"<p class="legend"><span style="color:{PQ}">&#9632;</span> post-quantum or hybrid &nbsp;
<span style="color:{COMPOSITE}">&#9632;</span> composite token (ML-DSA + classical) &nbsp;
<span style="color:{CLASSICAL}">&#9632;</span> classical &nbsp; <span style="color:{NONE}">&#9632;</span> none</p>
<h2>Callers, classical stragglers first</h2>
<table id="callers"><tr><th>caller</th><th>requests</th><th>refused</th><th>key exchange</th><th>token</th><th>still classical</th></tr>
"#
        );
        let mut callers: Vec<(&String, &IdentityUsage)> = self.identities.iter().collect();
        callers.sort_by(|a, b| {
            straggler_rank(a.1)
                .cmp(&straggler_rank(b.1))
                .then(a.0.cmp(b.0))
        });
        for (name, u) in callers {
            let _ = writeln!(
                h,
                r#"<tr class="{}"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>"#,
                if u.classical.is_empty() {
                    "ok"
                } else {
                    "straggler"
                },
                escape(name),
                u.requests,
                u.denied + u.rejected,
                bar("kex", &u.kex_classes, kex_colour),
                bar("alg", &u.token_algs, alg_colour),
                if u.classical.is_empty() {
                    "<span class=\"muted\">no</span>".to_owned()
                } else {
                    escape(&u.classical.join(", "))
                }
            );
        }
        h.push_str("</table>\n<h2>Requests over time, by key-exchange class</h2>\n");
        h.push_str(&self.timeline_svg());
        h.push_str("<h2>Alerts and refusals</h2>\n<ul id=\"alerts\">\n");
        let mut any = false;
        for (name, u) in &self.identities {
            for (kind, n) in &u.anomalies {
                any = true;
                let _ = writeln!(
                    h,
                    "<li class=\"alert\"><strong>{}</strong>: {} &times; {n}</li>",
                    escape(kind),
                    escape(name)
                );
            }
            for (what, n) in &u.refusals {
                any = true;
                let _ = writeln!(
                    h,
                    "<li class=\"refusal\">{}: {} &times; {n}</li>",
                    escape(name),
                    escape(what)
                );
            }
        }
        if !any {
            h.push_str("<li class=\"muted\">none</li>\n");
        }
        h.push_str("</ul>\n<p class=\"muted\">Made by pqguard audit report from the audit trail; run pqguard audit verify first: this page does not check signatures.</p>\n</body></html>\n");
        h
    }

    fn timeline_svg(&self) -> String {
        let (w, hgt) = (800.0_f64, 200.0_f64);
        let peak = self
            .timeline
            .values()
            .map(|m| m.values().sum::<u64>())
            .max()
            .unwrap_or(0);
        let n = self.timeline.len().max(1) as f64;
        let col = (w / n).min(60.0);
        let mut svg = format!(
            r#"<svg id="timeline" width="{w}" height="{}" role="img">"#,
            hgt + 20.0
        );
        for (i, (minute, classes)) in self.timeline.iter().enumerate() {
            let mut y = hgt;
            for class in ["pq", "hybrid-pq", "classical", "none"] {
                let count = classes.get(class).copied().unwrap_or(0);
                if count == 0 || peak == 0 {
                    continue;
                }
                let bar_h = hgt * count as f64 / peak as f64;
                y -= bar_h;
                let (fill, css) = kex_colour(class);
                let _ = write!(
                    svg,
                    r#"<rect class="t-{css}" x="{:.1}" y="{y:.1}" width="{:.1}" height="{bar_h:.1}" fill="{fill}"><title>{} {class} {count}</title></rect>"#,
                    i as f64 * col + 2.0,
                    col - 4.0,
                    utc(*minute)
                );
            }
        }
        if let (Some(first), Some(last)) =
            (self.timeline.keys().next(), self.timeline.keys().last())
        {
            let _ = write!(
                svg,
                r#"<text x="0" y="{}" font-size="11">{}</text><text x="{w}" y="{}" font-size="11" text-anchor="end">{}</text>"#,
                hgt + 15.0,
                utc(*first),
                hgt + 15.0,
                utc(*last)
            );
        }
        svg.push_str("</svg>\n");
        svg
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn names_from_the_log_are_escaped() {
        assert_eq!(
            escape(r#"<script>"x"&'"#),
            "&lt;script&gt;&quot;x&quot;&amp;&#39;"
        );
        let mut inv = Inventory::new();
        inv.identities.insert(
            "<img src=x onerror=alert(1)>".into(),
            IdentityUsage::default(),
        );
        let page = inv.to_html();
        assert!(!page.contains("<img"), "{page}");
        assert!(page.contains("&lt;img src=x onerror=alert(1)&gt;"));
        assert!(!page.contains("<script"));
    }

    #[test]
    fn dates_are_utc() {
        assert_eq!(utc(0), "1970-01-01 00:00 UTC");
        assert_eq!(utc(1_796_187_743_372), "2026-12-02 05:02 UTC");
        assert_eq!(utc(951_782_400_000), "2000-02-29 00:00 UTC");
    }
}
