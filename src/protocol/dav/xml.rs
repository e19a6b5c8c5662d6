//! A small namespace-resolved element tree over quick-xml, enough for
//! multistatus and error bodies, with bounds against hostile input.

use quick_xml::events::Event;
use quick_xml::name::ResolveResult;
use quick_xml::reader::NsReader;

use super::DavParseError;

/// Deepest nesting accepted (a multistatus is about 6 levels deep).
const MAX_DEPTH: usize = 64;
/// Most elements in one document (a 100,000-item collection listing is
/// about 1.2 million elements).
const MAX_ELEMENTS: usize = 4_000_000;

/// One element: its namespace URI, local name, children and text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Element {
    /// Namespace URI (`DAV:`), empty when unbound.
    pub ns: String,
    /// Local name (`href`).
    pub name: String,
    /// Attributes: (local name, value), namespaces dropped.
    pub attrs: Vec<(String, String)>,
    /// Child elements, in order.
    pub children: Vec<Element>,
    /// The text directly inside, concatenated (entities decoded).
    pub text: String,
}

impl Element {
    /// True when this element is `{ns}name`.
    pub fn is(&self, ns: &str, name: &str) -> bool {
        self.ns == ns && self.name == name
    }

    /// The first child `{ns}name`.
    pub fn child(&self, ns: &str, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.is(ns, name))
    }

    /// Every child `{ns}name`.
    pub fn children_named<'a>(
        &'a self,
        ns: &'a str,
        name: &'a str,
    ) -> impl Iterator<Item = &'a Element> + 'a {
        self.children.iter().filter(move |c| c.is(ns, name))
    }

    /// An attribute by local name.
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Parses a whole document into its root element.
pub fn parse(body: &[u8]) -> Result<Element, DavParseError> {
    let text =
        std::str::from_utf8(body).map_err(|_| DavParseError::new("the body is not UTF-8"))?;
    let mut reader = NsReader::from_str(text);
    reader.config_mut().trim_text(false);
    let mut stack: Vec<Element> = Vec::new();
    let mut count = 0usize;
    let mut root: Option<Element> = None;
    loop {
        let (ns, event) = reader
            .read_resolved_event()
            .map_err(|e| DavParseError::new(format!("malformed XML: {e}")))?;
        match event {
            Event::Start(start) => {
                count += 1;
                if count > MAX_ELEMENTS {
                    return Err(DavParseError::new("too many XML elements"));
                }
                stack.push(element(&ns, &start));
                if stack.len() > MAX_DEPTH {
                    return Err(DavParseError::new("XML nested too deeply"));
                }
            }
            Event::Empty(start) => {
                count += 1;
                if count > MAX_ELEMENTS {
                    return Err(DavParseError::new("too many XML elements"));
                }
                stack.push(element(&ns, &start));
                if stack.len() > MAX_DEPTH {
                    return Err(DavParseError::new("XML nested too deeply"));
                }
                close(&mut stack, &mut root)?;
            }
            Event::End(_) => close(&mut stack, &mut root)?,
            Event::Text(t) => {
                if let Some(top) = stack.last_mut() {
                    let s = t
                        .unescape()
                        .map_err(|e| DavParseError::new(format!("malformed XML text: {e}")))?;
                    top.text.push_str(&s);
                }
            }
            Event::CData(c) => {
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&String::from_utf8_lossy(&c));
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if !stack.is_empty() {
        return Err(DavParseError::new("the XML ends inside an element"));
    }
    root.ok_or_else(|| DavParseError::new("the body holds no XML element"))
}

fn element(ns: &ResolveResult<'_>, start: &quick_xml::events::BytesStart<'_>) -> Element {
    let mut el = Element {
        ns: namespace(ns),
        name: String::from_utf8_lossy(start.local_name().as_ref()).into_owned(),
        ..Element::default()
    };
    for a in start.attributes().with_checks(false).flatten() {
        let key = a.key.as_ref();
        if key == b"xmlns" || key.starts_with(b"xmlns:") {
            continue;
        }
        let value = a
            .unescape_value()
            .map(|v| v.into_owned())
            .unwrap_or_default();
        el.attrs.push((
            String::from_utf8_lossy(a.key.local_name().as_ref()).into_owned(),
            value,
        ));
    }
    el
}

fn close(stack: &mut Vec<Element>, root: &mut Option<Element>) -> Result<(), DavParseError> {
    let el = stack
        .pop()
        .ok_or_else(|| DavParseError::new("unbalanced XML end tag"))?;
    match stack.last_mut() {
        Some(parent) => parent.children.push(el),
        None => {
            if root.is_some() {
                return Err(DavParseError::new("more than one XML root element"));
            }
            *root = Some(el);
        }
    }
    Ok(())
}

fn namespace(ns: &ResolveResult<'_>) -> String {
    match ns {
        ResolveResult::Bound(n) => String::from_utf8_lossy(n.as_ref()).into_owned(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn depth(e: &Element) -> usize {
        1 + e.children.iter().map(depth).max().unwrap_or(0)
    }

    #[test]
    fn the_depth_bound_holds_for_empty_elements_too() {
        // The `dav_multistatus` fuzz target's depth check: an empty element
        // inside MAX_DEPTH open ones made a tree deeper than the bound.
        let at_bound = format!(
            "{}<b/>{}",
            "<a>".repeat(MAX_DEPTH - 1),
            "</a>".repeat(MAX_DEPTH - 1)
        );
        assert_eq!(depth(&parse(at_bound.as_bytes()).unwrap()), MAX_DEPTH);
        let beyond = format!(
            "{}<b/>{}",
            "<a>".repeat(MAX_DEPTH),
            "</a>".repeat(MAX_DEPTH)
        );
        let err = parse(beyond.as_bytes()).unwrap_err();
        assert!(err.to_string().contains("nested too deeply"), "{err}");
    }
}
