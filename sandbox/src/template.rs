//! Fills the `{{name}}` placeholders of the server config fixtures.
//!
//! Strict: a placeholder without a value is an error, so a fixture and the
//! code that renders it cannot drift apart silently.

use super::SandboxError;

/// Replaces every `{{key}}` in `template` with its value from `vars`.
pub(crate) fn render(
    name: &'static str,
    template: &str,
    vars: &[(&str, &str)],
) -> Result<String, SandboxError> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            return Err(SandboxError::Template {
                template: name,
                placeholder: after.chars().take(20).collect(),
            });
        };
        let key = &after[..end];
        let value = vars.iter().find(|(k, _)| *k == key).map(|(_, v)| *v);
        let Some(value) = value else {
            return Err(SandboxError::Template {
                template: name,
                placeholder: key.to_owned(),
            });
        };
        out.push_str(value);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_every_placeholder() {
        let out = render(
            "t",
            "a={{a}} b={{b}} a={{a}} {user}",
            &[("a", "1"), ("b", "2")],
        )
        .unwrap();
        assert_eq!(out, "a=1 b=2 a=1 {user}");
    }

    #[test]
    fn refuses_an_unknown_placeholder() {
        let error = render("t", "x={{missing}}", &[("a", "1")]).unwrap_err();
        assert!(
            matches!(error, SandboxError::Template { placeholder, .. } if placeholder == "missing")
        );
    }
}
