//! Choosing and filling a template for a send: the template must be sendable in the
//! configuration (approved, on WhatsApp), in a language it has, with exactly its variables.
//! Also the WhatsApp 24-hour window. Pure.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::gateway::model::outbound::OutContent;
use crate::api::template::TemplateCategory;
use crate::config::TemplateConfig;

/// How long after the customer's last message WhatsApp allows free-form messages.
pub const WINDOW_MS: i64 = 24 * 3600 * 1000;

/// When the WhatsApp window of a customer who last wrote at `last_customer_ms` closes.
pub fn window_closes_at(last_customer_ms: i64) -> i64 {
    last_customer_ms.saturating_add(WINDOW_MS)
}

/// A template the configuration can send, as a refusal lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Sendable {
    /// The MessageTemplate object's name.
    pub name: String,
    /// The template's name at the provider (what a desk knows a WhatsApp template by).
    pub template_name: String,
    /// Its sendable languages.
    pub languages: Vec<String>,
}

/// A template as a desk offers it to an agent (`GET /v1/workstreams/{ws}/templates`): what can
/// still be sent once the WhatsApp window is closed, each language with its text and variables.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Offered<'t> {
    /// The MessageTemplate object's name (what a send names).
    pub name: &'t str,
    /// The template's name at the provider.
    pub template_name: &'t str,
    /// The WhatsApp category.
    pub category: TemplateCategory,
    /// The language used when the customer's has none.
    pub default_language: &'t str,
    /// The sendable languages.
    pub localizations: Vec<OfferedLocalization<'t>>,
}

/// One sendable language of an [`Offered`] template.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OfferedLocalization<'t> {
    /// The language.
    pub language: &'t str,
    /// The text, with its variables as `{{name}}`.
    pub body: &'t str,
    /// The variables a send must fill, in order, each with the sample the template was
    /// approved with.
    pub variables: Vec<Variable<'t>>,
}

/// A template variable and its sample value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Variable<'t> {
    /// Its name (`1`, `2`, … on WhatsApp).
    pub name: &'t str,
    /// The sample the template was approved with.
    pub example: &'t str,
}

/// The templates that can be sent, as a desk offers them; those with no sendable language are
/// left out.
pub fn offered(templates: &[TemplateConfig]) -> Vec<Offered<'_>> {
    templates
        .iter()
        .filter(|t| !t.localizations.is_empty())
        .map(|t| Offered {
            name: &t.name,
            template_name: &t.template_name,
            category: t.category,
            default_language: &t.default_language,
            localizations: t
                .localizations
                .iter()
                .map(|l| OfferedLocalization {
                    language: &l.language,
                    body: &l.body,
                    variables: l.variables.iter().map(|(name, example)| Variable { name, example }).collect(),
                })
                .collect(),
        })
        .collect()
}

/// Why a template cannot be sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TemplateError {
    /// No sendable template of that name.
    NotFound {
        /// The templates that can be sent.
        sendable: Vec<Sendable>,
    },
    /// The asked language has no sendable localization.
    LanguageUnavailable {
        /// The languages it has.
        languages: Vec<String>,
    },
    /// The variables are not the template's.
    Variables {
        /// The template's variables.
        expected: Vec<String>,
        /// Those not given.
        missing: Vec<String>,
        /// Those given that the template does not have.
        unexpected: Vec<String>,
    },
}

fn base(language: &str) -> String {
    language.split(['-', '_']).next().unwrap_or(language).to_ascii_lowercase()
}

/// The template `name` refers to: a MessageTemplate object's name, else a template's name at
/// the provider (`templateName`, unique per account).
fn find<'t>(templates: &'t [TemplateConfig], name: &str) -> Option<&'t TemplateConfig> {
    templates.iter().find(|t| t.name == name).or_else(|| templates.iter().find(|t| t.template_name == name))
}

fn not_found(templates: &[TemplateConfig]) -> TemplateError {
    let sendable = templates
        .iter()
        .map(|t| Sendable { name: t.name.clone(), template_name: t.template_name.clone(), languages: t.localizations.iter().map(|l| l.language.clone()).collect() })
        .collect();
    TemplateError::NotFound { sendable }
}

/// The template content for `name` (see [`find`]): the asked `language` exactly (its base
/// language as a second choice), or without one the customer's language, else the template's
/// default language, else its first. The variables must be exactly the localization's.
pub fn resolve(
    templates: &[TemplateConfig],
    name: &str,
    language: Option<&str>,
    customer_language: Option<&str>,
    variables: &BTreeMap<String, String>,
) -> Result<OutContent, TemplateError> {
    let template = find(templates, name).ok_or_else(|| not_found(templates))?;
    let pick = |want: &str| {
        let exact = template.localizations.iter().find(|l| l.language.eq_ignore_ascii_case(want));
        exact.or_else(|| template.localizations.iter().find(|l| base(&l.language) == base(want)))
    };
    let localization = match language {
        Some(want) => pick(want).ok_or_else(|| TemplateError::LanguageUnavailable { languages: template.localizations.iter().map(|l| l.language.clone()).collect() })?,
        None => customer_language
            .and_then(pick)
            .or_else(|| pick(&template.default_language))
            .or_else(|| template.localizations.first())
            .ok_or_else(|| not_found(templates))?,
    };
    let expected: BTreeSet<&String> = localization.variables.keys().collect();
    let given: BTreeSet<&String> = variables.keys().collect();
    if expected != given {
        return Err(TemplateError::Variables {
            expected: expected.iter().map(|s| s.to_string()).collect(),
            missing: expected.difference(&given).map(|s| s.to_string()).collect(),
            unexpected: given.difference(&expected).map(|s| s.to_string()).collect(),
        });
    }
    let mut text = localization.body.clone();
    for (key, value) in variables {
        text = text.replace(&format!("{{{{{key}}}}}"), value);
    }
    Ok(OutContent::Template {
        name: template.name.clone(),
        language: localization.language.clone(),
        variables: variables.clone(),
        text,
        content_sid: localization.content_sid.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TemplateLocalizationConfig;

    fn templates() -> Vec<TemplateConfig> {
        let l = |language: &str, body: &str, vars: &[&str]| TemplateLocalizationConfig {
            language: language.into(),
            body: body.into(),
            content_sid: Some(format!("HX{language}")),
            variables: vars.iter().map(|v| (v.to_string(), "sample".to_string())).collect(),
        };
        vec![TemplateConfig {
            name: "order-update".into(),
            template_name: "order_update".into(),
            category: Default::default(),
            default_language: "en".into(),
            localizations: vec![l("en", "Hi {{1}}, order {{2}} shipped", &["1", "2"]), l("tr", "Merhaba {{1}}, {{2}}", &["1", "2"])],
        }]
    }

    fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn a_template_is_filled_in_the_chosen_language() {
        let v = vars(&[("1", "Ann"), ("2", "A-7")]);
        let OutContent::Template { language, text, content_sid, .. } = resolve(&templates(), "order-update", None, Some("tr-TR"), &v).unwrap() else { panic!() };
        assert_eq!((language.as_str(), text.as_str(), content_sid.as_deref()), ("tr", "Merhaba Ann, A-7", Some("HXtr")));
        let OutContent::Template { language, text, .. } = resolve(&templates(), "order-update", None, Some("ja"), &v).unwrap() else { panic!() };
        assert_eq!((language.as_str(), text.as_str()), ("en", "Hi Ann, order A-7 shipped"), "the default language otherwise");
    }

    #[test]
    fn a_template_is_found_by_its_object_name_or_its_provider_name() {
        let v = vars(&[("1", "Ann"), ("2", "A-7")]);
        let by_object = resolve(&templates(), "order-update", Some("en"), None, &v).unwrap();
        assert_eq!(resolve(&templates(), "order_update", Some("en"), None, &v).unwrap(), by_object, "the WhatsApp name a desk knows");
        let OutContent::Template { name, .. } = by_object else { panic!() };
        assert_eq!(name, "order-update");

        // An object name wins over another template's provider name.
        let mut two = templates();
        let mut other = two[0].clone();
        other.name = "order_update".into();
        other.template_name = "order_update_v2".into();
        other.localizations.truncate(1);
        other.localizations[0].content_sid = Some("HXv2".into());
        two.push(other);
        let OutContent::Template { name, content_sid, .. } = resolve(&two, "order_update", Some("en"), None, &v).unwrap() else { panic!() };
        assert_eq!((name.as_str(), content_sid.as_deref()), ("order_update", Some("HXv2")));
    }

    #[test]
    fn a_desk_is_offered_every_sendable_language_with_its_variables_and_nothing_unsendable() {
        let mut all = templates();
        let mut pending = all[0].clone();
        pending.name = "pending".into();
        pending.localizations.clear();
        all.push(pending);
        let offered = offered(&all);
        assert_eq!(offered.len(), 1, "a template with no sendable language is not offered");
        let json = serde_json::to_value(&offered[0]).unwrap();
        assert_eq!(json["templateName"], "order_update");
        assert_eq!(json["localizations"][1]["language"], "tr");
        assert_eq!(json["localizations"][0]["variables"], serde_json::json!([{"name": "1", "example": "sample"}, {"name": "2", "example": "sample"}]));
        assert!(json["localizations"][0].get("contentSid").is_none(), "the provider's content ID is the gateway's business");
    }

    #[test]
    fn refusals_say_what_is_wrong() {
        let sendable = vec![Sendable { name: "order-update".into(), template_name: "order_update".into(), languages: vec!["en".into(), "tr".into()] }];
        assert_eq!(resolve(&templates(), "nope", None, None, &BTreeMap::new()), Err(TemplateError::NotFound { sendable }));
        assert_eq!(
            resolve(&templates(), "order-update", Some("de"), None, &vars(&[("1", "a"), ("2", "b")])),
            Err(TemplateError::LanguageUnavailable { languages: vec!["en".into(), "tr".into()] })
        );
        assert_eq!(
            resolve(&templates(), "order-update", Some("en"), None, &vars(&[("1", "a"), ("3", "c")])),
            Err(TemplateError::Variables { expected: vec!["1".into(), "2".into()], missing: vec!["2".into()], unexpected: vec!["3".into()] })
        );
    }

    #[test]
    fn the_window_lasts_a_day() {
        assert_eq!(window_closes_at(1_000), 1_000 + 86_400_000);
    }
}
