//! The CustomResourceDefinitions generated from the Rust types: what `switchboard crd` prints
//! and `crds/` holds.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps, JSONSchemaPropsOrArray, JSONSchemaPropsOrBool,
};
use kube::CustomResourceExt;
use serde_json::Value;

use super::{MessageTemplate, MessagingAccount, RoutingRule, Workstream};

/// The four kinds of Switchboard.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// MessagingAccount.
    MessagingAccount,
    /// Workstream.
    Workstream,
    /// RoutingRule.
    RoutingRule,
    /// MessageTemplate.
    MessageTemplate,
}

impl Kind {
    /// Every kind, in the order they are printed.
    pub const ALL: [Kind; 4] = [Kind::MessagingAccount, Kind::Workstream, Kind::RoutingRule, Kind::MessageTemplate];

    /// The kind named `name`, if it is one of ours.
    pub fn from_name(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// The kind's name as in `kind:`.
    pub fn name(self) -> &'static str {
        match self {
            Kind::MessagingAccount => "MessagingAccount",
            Kind::Workstream => "Workstream",
            Kind::RoutingRule => "RoutingRule",
            Kind::MessageTemplate => "MessageTemplate",
        }
    }

    /// The generated CRD of this kind.
    pub fn crd(self) -> CustomResourceDefinition {
        let mut crd = self.derived_crd();
        for version in &mut crd.spec.versions {
            if let Some(schema) = version.schema.as_mut().and_then(|s| s.open_api_v3_schema.as_mut()) {
                drop_nullable(schema);
            }
        }
        crd
    }

    fn derived_crd(self) -> CustomResourceDefinition {
        match self {
            Kind::MessagingAccount => MessagingAccount::crd(),
            Kind::Workstream => Workstream::crd(),
            Kind::RoutingRule => RoutingRule::crd(),
            Kind::MessageTemplate => MessageTemplate::crd(),
        }
    }

    /// The file in `crds/` that holds this kind's CRD.
    pub fn file_name(self) -> String {
        format!("{}.yaml", self.name().to_lowercase())
    }

    /// The openAPIV3Schema of this kind, as JSON.
    pub fn schema(self) -> Value {
        let crd = self.crd();
        let schema = crd.spec.versions.into_iter().next().and_then(|v| v.schema).and_then(|s| s.open_api_v3_schema);
        serde_json::to_value(schema).expect("a JSONSchemaProps always serializes")
    }
}

/// Optional fields are absent when unset (every `Option` skips `None` when serialized), never
/// null, so no field is `nullable`. A nullable field is published in the API server's
/// `/openapi/v2` without its type and properties, which leaves `kubectl explain` showing `<>`
/// and kubectl's client-side field check letting typos inside it through. A null sent anyway is
/// pruned by the API server (1.20+) before defaulting and validation, as `switchboard check`
/// does. schemars also lists `null` among the values of an optional enum, which API servers
/// before 1.30 refuse in a CRD.
fn drop_nullable(schema: &mut JSONSchemaProps) {
    schema.nullable = None;
    if let Some(values) = &mut schema.enum_ {
        values.retain(|v| !v.0.is_null());
    }
    let children = schema.properties.iter_mut().flat_map(|p| p.values_mut());
    let items = schema.items.iter_mut().filter_map(|i| match i {
        JSONSchemaPropsOrArray::Schema(s) => Some(s.as_mut()),
        JSONSchemaPropsOrArray::Schemas(_) => None,
    });
    let additional = schema.additional_properties.iter_mut().filter_map(|a| match a {
        JSONSchemaPropsOrBool::Schema(s) => Some(s.as_mut()),
        JSONSchemaPropsOrBool::Bool(_) => None,
    });
    for child in children.chain(items).chain(additional) {
        drop_nullable(child);
    }
}

/// The CRD of `kind` as a YAML document, as written to `crds/`.
pub fn to_yaml(kind: Kind) -> String {
    serde_yaml::to_string(&kind.crd()).expect("a CRD always serializes")
}

/// All four CRDs as one multi-document YAML stream.
pub fn all_yaml() -> String {
    Kind::ALL.into_iter().map(to_yaml).collect::<Vec<_>>().join("---\n")
}
