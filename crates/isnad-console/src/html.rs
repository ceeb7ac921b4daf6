//! HTML building with one escaping function.
//!
//! Markup comes only from `&'static str` literals ([`Html::raw`]); every
//! value that is not a literal of this crate goes through [`escape`]
//! ([`Html::text`], [`Html::attr`]), so a message subject holding
//! `<script>` is shown as text.

use crate::i18n::Lang;

/// Escapes text for an HTML text node or a double-quoted attribute value.
pub fn escape(s: &str, out: &mut String) {
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
}

/// A page under construction.
#[derive(Debug, Default)]
pub struct Html {
    buf: String,
}

impl Html {
    /// An empty fragment.
    pub fn new() -> Self {
        Self::default()
    }

    /// Markup from a literal of this crate.
    pub fn raw(&mut self, s: &'static str) -> &mut Self {
        self.buf.push_str(s);
        self
    }

    /// Escaped text.
    pub fn text(&mut self, s: &str) -> &mut Self {
        escape(s, &mut self.buf);
        self
    }

    /// ` name="value"` with the value escaped.
    pub fn attr(&mut self, name: &'static str, value: &str) -> &mut Self {
        self.buf.push(' ');
        self.buf.push_str(name);
        self.buf.push_str("=\"");
        escape(value, &mut self.buf);
        self.buf.push('"');
        self
    }

    /// `<tag>text</tag>` with the text escaped.
    pub fn el(&mut self, tag: &'static str, text: &str) -> &mut Self {
        self.buf.push('<');
        self.buf.push_str(tag);
        self.buf.push('>');
        escape(text, &mut self.buf);
        self.buf.push_str("</");
        self.buf.push_str(tag);
        self.buf.push('>');
        self
    }

    /// Appends another fragment.
    pub fn append(&mut self, other: Html) -> &mut Self {
        self.buf.push_str(&other.buf);
        self
    }

    /// The whole document around `body`: language, direction, title, the
    /// one stylesheet (no inline style or script anywhere).
    pub fn document(lang: Lang, title: &str, body: Html) -> String {
        let mut h = Html::new();
        h.raw("<!DOCTYPE html>\n<html")
            .attr("lang", lang.tag())
            .attr("dir", lang.dir())
            .raw("><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">")
            .raw("<link rel=\"stylesheet\" href=\"/console/assets/console.css\">")
            .raw("<title>")
            .text(title)
            .raw("</title></head><body>")
            .append(body)
            .raw("</body></html>\n");
        h.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_in_values_is_escaped() {
        let mut h = Html::new();
        h.raw("<p").attr("title", "\"><script>x</script>").raw(">");
        h.text("<script>alert('x')</script> & co").raw("</p>");
        assert_eq!(
            h.buf,
            "<p title=\"&quot;&gt;&lt;script&gt;x&lt;/script&gt;\">&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; co</p>"
        );
    }
}
