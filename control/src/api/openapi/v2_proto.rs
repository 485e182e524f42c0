//! The OpenAPI v2 document as gnostic's protobuf (`openapi.v2.Document` of
//! github.com/google/gnostic-models `openapiv2/OpenAPIv2.proto`), which client-go's
//! `OpenAPISchema()` asks for and decodes with `proto.Unmarshal`.
//!
//! The messages are written by hand from that file (same field numbers and types; the
//! security and XML messages, which no swagger document of ours has, are left out — a
//! decoder skips what a message lacks). [`document`] converts any swagger 2.0 JSON document
//! into them as gnostic's `ParseDocument` does: every value gnostic keeps as YAML
//! (`default`, `enum`, `example`, vendor extensions) goes into `Any.yaml` as JSON text,
//! which is valid YAML and what kube-openapi's `VendorExtensionToMap` parses.

use serde_json::{Map, Value};

/// `openapi.v2.Document`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Document {
    /// `swagger` ("2.0").
    #[prost(string, tag = "1")]
    pub swagger: String,
    /// `info`.
    #[prost(message, optional, tag = "2")]
    pub info: Option<Info>,
    /// `host`.
    #[prost(string, tag = "3")]
    pub host: String,
    /// `basePath`.
    #[prost(string, tag = "4")]
    pub base_path: String,
    /// `schemes`.
    #[prost(string, repeated, tag = "5")]
    pub schemes: Vec<String>,
    /// `consumes`.
    #[prost(string, repeated, tag = "6")]
    pub consumes: Vec<String>,
    /// `produces`.
    #[prost(string, repeated, tag = "7")]
    pub produces: Vec<String>,
    /// `paths`.
    #[prost(message, optional, tag = "8")]
    pub paths: Option<Paths>,
    /// `definitions`.
    #[prost(message, optional, tag = "9")]
    pub definitions: Option<Definitions>,
    /// `parameters` (shared by `$ref`).
    #[prost(message, optional, tag = "10")]
    pub parameters: Option<ParameterDefinitions>,
    /// `x-…` extensions.
    #[prost(message, repeated, tag = "16")]
    pub vendor_extension: Vec<NamedAny>,
}

/// `openapi.v2.Info`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Info {
    /// `title`.
    #[prost(string, tag = "1")]
    pub title: String,
    /// `version`.
    #[prost(string, tag = "2")]
    pub version: String,
    /// `description`.
    #[prost(string, tag = "3")]
    pub description: String,
    /// `x-…` extensions.
    #[prost(message, repeated, tag = "7")]
    pub vendor_extension: Vec<NamedAny>,
}

/// `google.protobuf.Any` (never set here: gnostic fills `Any.yaml`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct ProtobufAny {
    /// `type_url`.
    #[prost(string, tag = "1")]
    pub type_url: String,
    /// `value`.
    #[prost(bytes = "vec", tag = "2")]
    pub value: Vec<u8>,
}

/// `openapi.v2.Any`: a free-form value as YAML text.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Any {
    /// `value`.
    #[prost(message, optional, tag = "1")]
    pub value: Option<ProtobufAny>,
    /// The value as YAML (here: JSON, a subset of YAML).
    #[prost(string, tag = "2")]
    pub yaml: String,
}

/// `openapi.v2.NamedAny`: one vendor extension.
#[derive(Clone, PartialEq, prost::Message)]
pub struct NamedAny {
    /// The extension's name (`x-kubernetes-group-version-kind`).
    #[prost(string, tag = "1")]
    pub name: String,
    /// Its value.
    #[prost(message, optional, tag = "2")]
    pub value: Option<Any>,
}

/// `openapi.v2.Paths`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Paths {
    /// `x-…` extensions.
    #[prost(message, repeated, tag = "1")]
    pub vendor_extension: Vec<NamedAny>,
    /// The paths.
    #[prost(message, repeated, tag = "2")]
    pub path: Vec<NamedPathItem>,
}

/// `openapi.v2.NamedPathItem`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct NamedPathItem {
    /// The path (`/api/v1/namespaces/{namespace}/pods`).
    #[prost(string, tag = "1")]
    pub name: String,
    /// Its operations.
    #[prost(message, optional, tag = "2")]
    pub value: Option<PathItem>,
}

/// `openapi.v2.PathItem`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PathItem {
    /// `$ref`.
    #[prost(string, tag = "1")]
    pub xref: String,
    /// GET.
    #[prost(message, optional, tag = "2")]
    pub get: Option<Operation>,
    /// PUT.
    #[prost(message, optional, tag = "3")]
    pub put: Option<Operation>,
    /// POST.
    #[prost(message, optional, tag = "4")]
    pub post: Option<Operation>,
    /// DELETE.
    #[prost(message, optional, tag = "5")]
    pub delete: Option<Operation>,
    /// OPTIONS.
    #[prost(message, optional, tag = "6")]
    pub options: Option<Operation>,
    /// HEAD.
    #[prost(message, optional, tag = "7")]
    pub head: Option<Operation>,
    /// PATCH.
    #[prost(message, optional, tag = "8")]
    pub patch: Option<Operation>,
    /// Parameters of every operation on the path.
    #[prost(message, repeated, tag = "9")]
    pub parameters: Vec<ParametersItem>,
    /// `x-…` extensions.
    #[prost(message, repeated, tag = "10")]
    pub vendor_extension: Vec<NamedAny>,
}

/// `openapi.v2.Operation`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Operation {
    /// `tags`.
    #[prost(string, repeated, tag = "1")]
    pub tags: Vec<String>,
    /// `summary`.
    #[prost(string, tag = "2")]
    pub summary: String,
    /// `description`.
    #[prost(string, tag = "3")]
    pub description: String,
    /// `operationId`.
    #[prost(string, tag = "5")]
    pub operation_id: String,
    /// `produces`.
    #[prost(string, repeated, tag = "6")]
    pub produces: Vec<String>,
    /// `consumes`.
    #[prost(string, repeated, tag = "7")]
    pub consumes: Vec<String>,
    /// `parameters`.
    #[prost(message, repeated, tag = "8")]
    pub parameters: Vec<ParametersItem>,
    /// `responses`.
    #[prost(message, optional, tag = "9")]
    pub responses: Option<Responses>,
    /// `schemes`.
    #[prost(string, repeated, tag = "10")]
    pub schemes: Vec<String>,
    /// `deprecated`.
    #[prost(bool, tag = "11")]
    pub deprecated: bool,
    /// `x-…` extensions (`x-kubernetes-group-version-kind`, `x-kubernetes-action`).
    #[prost(message, repeated, tag = "13")]
    pub vendor_extension: Vec<NamedAny>,
}

/// `openapi.v2.ParametersItem`: a parameter or a reference to a shared one.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ParametersItem {
    /// Which.
    #[prost(oneof = "ParametersItemOneof", tags = "1, 2")]
    pub oneof: Option<ParametersItemOneof>,
}

/// The choice of [`ParametersItem`].
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum ParametersItemOneof {
    /// An inline parameter.
    #[prost(message, tag = "1")]
    Parameter(Parameter),
    /// `{"$ref": "#/parameters/…"}`.
    #[prost(message, tag = "2")]
    JsonReference(JsonReference),
}

/// `openapi.v2.JsonReference`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct JsonReference {
    /// `$ref`.
    #[prost(string, tag = "1")]
    pub xref: String,
    /// `description`.
    #[prost(string, tag = "2")]
    pub description: String,
}

/// `openapi.v2.Parameter`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Parameter {
    /// Which.
    #[prost(oneof = "ParameterOneof", tags = "1, 2")]
    pub oneof: Option<ParameterOneof>,
}

/// The choice of [`Parameter`].
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum ParameterOneof {
    /// `in: body`.
    #[prost(message, tag = "1")]
    BodyParameter(Box<BodyParameter>),
    /// `in: query | path | header | formData`.
    #[prost(message, tag = "2")]
    NonBodyParameter(NonBodyParameter),
}

/// `openapi.v2.BodyParameter`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct BodyParameter {
    /// `description`.
    #[prost(string, tag = "1")]
    pub description: String,
    /// `name`.
    #[prost(string, tag = "2")]
    pub name: String,
    /// `in` ("body").
    #[prost(string, tag = "3")]
    pub r#in: String,
    /// `required`.
    #[prost(bool, tag = "4")]
    pub required: bool,
    /// The body's schema.
    #[prost(message, optional, tag = "5")]
    pub schema: Option<Schema>,
    /// `x-…` extensions.
    #[prost(message, repeated, tag = "6")]
    pub vendor_extension: Vec<NamedAny>,
}

/// `openapi.v2.NonBodyParameter`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct NonBodyParameter {
    /// Which.
    #[prost(oneof = "NonBodyParameterOneof", tags = "1, 2, 3, 4")]
    pub oneof: Option<NonBodyParameterOneof>,
}

/// The choice of [`NonBodyParameter`], by `in` (gnostic's `header_parameter_sub_schema`,
/// `form_data_parameter_sub_schema`, `query_parameter_sub_schema`, `path_parameter_sub_schema`).
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum NonBodyParameterOneof {
    /// `in: header`.
    #[prost(message, tag = "1")]
    Header(SimpleParameter),
    /// `in: formData`.
    #[prost(message, tag = "2")]
    FormData(SimpleParameter),
    /// `in: query`.
    #[prost(message, tag = "3")]
    Query(SimpleParameter),
    /// `in: path`.
    #[prost(message, tag = "4")]
    Path(SimpleParameter),
}

/// The leading fields `openapi.v2.QueryParameterSubSchema`, `PathParameterSubSchema`,
/// `HeaderParameterSubSchema` and `FormDataParameterSubSchema` number alike (1–4: required,
/// in, description, name). Their later fields are numbered differently per message, and
/// a decoder only needs these (cli-runtime looks parameters up by `name`), so the rest is
/// left out rather than mirrored four times.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SimpleParameter {
    /// `required`.
    #[prost(bool, tag = "1")]
    pub required: bool,
    /// `in`.
    #[prost(string, tag = "2")]
    pub r#in: String,
    /// `description`.
    #[prost(string, tag = "3")]
    pub description: String,
    /// `name`.
    #[prost(string, tag = "4")]
    pub name: String,
}

/// `openapi.v2.Responses`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Responses {
    /// By status code (`200`, `default`).
    #[prost(message, repeated, tag = "1")]
    pub response_code: Vec<NamedResponseValue>,
    /// `x-…` extensions.
    #[prost(message, repeated, tag = "2")]
    pub vendor_extension: Vec<NamedAny>,
}

/// `openapi.v2.NamedResponseValue`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct NamedResponseValue {
    /// Status code.
    #[prost(string, tag = "1")]
    pub name: String,
    /// The response.
    #[prost(message, optional, tag = "2")]
    pub value: Option<ResponseValue>,
}

/// `openapi.v2.ResponseValue`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ResponseValue {
    /// Which.
    #[prost(oneof = "ResponseValueOneof", tags = "1, 2")]
    pub oneof: Option<ResponseValueOneof>,
}

/// The choice of [`ResponseValue`].
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum ResponseValueOneof {
    /// An inline response.
    #[prost(message, tag = "1")]
    Response(Box<Response>),
    /// `{"$ref": "#/responses/…"}`.
    #[prost(message, tag = "2")]
    JsonReference(JsonReference),
}

/// `openapi.v2.Response`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Response {
    /// `description`.
    #[prost(string, tag = "1")]
    pub description: String,
    /// `schema`.
    #[prost(message, optional, tag = "2")]
    pub schema: Option<SchemaItem>,
    /// `x-…` extensions.
    #[prost(message, repeated, tag = "5")]
    pub vendor_extension: Vec<NamedAny>,
}

/// `openapi.v2.SchemaItem`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SchemaItem {
    /// Which.
    #[prost(oneof = "SchemaItemOneof", tags = "1")]
    pub oneof: Option<SchemaItemOneof>,
}

/// The choice of [`SchemaItem`] (`FileSchema`, tag 2, is not used here).
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum SchemaItemOneof {
    /// A schema.
    #[prost(message, tag = "1")]
    Schema(Schema),
}

/// `openapi.v2.Definitions`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Definitions {
    /// The definitions, by name.
    #[prost(message, repeated, tag = "1")]
    pub additional_properties: Vec<NamedSchema>,
}

/// `openapi.v2.ParameterDefinitions`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ParameterDefinitions {
    /// The shared parameters, by name.
    #[prost(message, repeated, tag = "1")]
    pub additional_properties: Vec<NamedParameter>,
}

/// `openapi.v2.NamedParameter`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct NamedParameter {
    /// Name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// The parameter.
    #[prost(message, optional, tag = "2")]
    pub value: Option<Parameter>,
}

/// `openapi.v2.NamedSchema`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct NamedSchema {
    /// Name (a definition's or a property's).
    #[prost(string, tag = "1")]
    pub name: String,
    /// The schema.
    #[prost(message, optional, tag = "2")]
    pub value: Option<Schema>,
}

/// `openapi.v2.Properties`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Properties {
    /// The properties, in the document's order.
    #[prost(message, repeated, tag = "1")]
    pub additional_properties: Vec<NamedSchema>,
}

/// `openapi.v2.TypeItem`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TypeItem {
    /// The type names.
    #[prost(string, repeated, tag = "1")]
    pub value: Vec<String>,
}

/// `openapi.v2.ItemsItem`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ItemsItem {
    /// One schema for every item (or one per position).
    #[prost(message, repeated, tag = "1")]
    pub schema: Vec<Schema>,
}

/// `openapi.v2.AdditionalPropertiesItem`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct AdditionalPropertiesItem {
    /// Which.
    #[prost(oneof = "AdditionalPropertiesOneof", tags = "1, 2")]
    pub oneof: Option<AdditionalPropertiesOneof>,
}

/// The choice of [`AdditionalPropertiesItem`].
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum AdditionalPropertiesOneof {
    /// The schema of every value.
    #[prost(message, tag = "1")]
    Schema(Box<Schema>),
    /// Whether other properties are allowed at all.
    #[prost(bool, tag = "2")]
    Boolean(bool),
}

/// `openapi.v2.Schema`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Schema {
    /// `$ref` (`#/definitions/<name>`).
    #[prost(string, tag = "1")]
    pub xref: String,
    /// `format`.
    #[prost(string, tag = "2")]
    pub format: String,
    /// `title`.
    #[prost(string, tag = "3")]
    pub title: String,
    /// `description`.
    #[prost(string, tag = "4")]
    pub description: String,
    /// `default`.
    #[prost(message, optional, tag = "5")]
    pub default: Option<Any>,
    /// `multipleOf`.
    #[prost(double, tag = "6")]
    pub multiple_of: f64,
    /// `maximum`.
    #[prost(double, tag = "7")]
    pub maximum: f64,
    /// `exclusiveMaximum`.
    #[prost(bool, tag = "8")]
    pub exclusive_maximum: bool,
    /// `minimum`.
    #[prost(double, tag = "9")]
    pub minimum: f64,
    /// `exclusiveMinimum`.
    #[prost(bool, tag = "10")]
    pub exclusive_minimum: bool,
    /// `maxLength`.
    #[prost(int64, tag = "11")]
    pub max_length: i64,
    /// `minLength`.
    #[prost(int64, tag = "12")]
    pub min_length: i64,
    /// `pattern`.
    #[prost(string, tag = "13")]
    pub pattern: String,
    /// `maxItems`.
    #[prost(int64, tag = "14")]
    pub max_items: i64,
    /// `minItems`.
    #[prost(int64, tag = "15")]
    pub min_items: i64,
    /// `uniqueItems`.
    #[prost(bool, tag = "16")]
    pub unique_items: bool,
    /// `maxProperties`.
    #[prost(int64, tag = "17")]
    pub max_properties: i64,
    /// `minProperties`.
    #[prost(int64, tag = "18")]
    pub min_properties: i64,
    /// `required`.
    #[prost(string, repeated, tag = "19")]
    pub required: Vec<String>,
    /// `enum`, one YAML value each.
    #[prost(message, repeated, tag = "20")]
    pub r#enum: Vec<Any>,
    /// `additionalProperties`.
    #[prost(message, optional, tag = "21")]
    pub additional_properties: Option<AdditionalPropertiesItem>,
    /// `type`.
    #[prost(message, optional, tag = "22")]
    pub r#type: Option<TypeItem>,
    /// `items`.
    #[prost(message, optional, tag = "23")]
    pub items: Option<ItemsItem>,
    /// `allOf`.
    #[prost(message, repeated, tag = "24")]
    pub all_of: Vec<Schema>,
    /// `properties`.
    #[prost(message, optional, tag = "25")]
    pub properties: Option<Properties>,
    /// `discriminator`.
    #[prost(string, tag = "26")]
    pub discriminator: String,
    /// `readOnly`.
    #[prost(bool, tag = "27")]
    pub read_only: bool,
    /// `example`.
    #[prost(message, optional, tag = "30")]
    pub example: Option<Any>,
    /// `x-…` extensions (`x-kubernetes-group-version-kind` on a kind's definition).
    #[prost(message, repeated, tag = "31")]
    pub vendor_extension: Vec<NamedAny>,
}

/// The swagger 2.0 document `doc` as gnostic's `Document`. Fields of the wrong JSON type
/// are left out, as are the parts no Kubernetes client reads from the protobuf (security,
/// tags, external docs, XML, response headers and examples).
pub fn document(doc: &Value) -> Document {
    Document {
        swagger: string(doc, "swagger"),
        info: doc.get("info").map(|info| Info {
            title: string(info, "title"),
            version: string(info, "version"),
            description: string(info, "description"),
            vendor_extension: extensions(info),
        }),
        host: string(doc, "host"),
        base_path: string(doc, "basePath"),
        schemes: strings(doc, "schemes"),
        consumes: strings(doc, "consumes"),
        produces: strings(doc, "produces"),
        paths: doc
            .get("paths")
            .and_then(Value::as_object)
            .map(|paths| Paths {
                vendor_extension: extensions_of(paths),
                path: paths
                    .iter()
                    .filter(|(name, _)| !is_extension(name))
                    .map(|(name, item)| NamedPathItem {
                        name: name.clone(),
                        value: Some(path_item(item)),
                    })
                    .collect(),
            }),
        definitions: doc
            .get("definitions")
            .and_then(Value::as_object)
            .map(|definitions| Definitions {
                additional_properties: named_schemas(definitions),
            }),
        parameters: doc
            .get("parameters")
            .and_then(Value::as_object)
            .map(|shared| ParameterDefinitions {
                additional_properties: shared
                    .iter()
                    .map(|(name, p)| NamedParameter {
                        name: name.clone(),
                        value: Some(parameter(p)),
                    })
                    .collect(),
            }),
        vendor_extension: extensions(doc),
    }
}

fn path_item(item: &Value) -> PathItem {
    let op = |method: &str| item.get(method).map(operation);
    PathItem {
        xref: string(item, "$ref"),
        get: op("get"),
        put: op("put"),
        post: op("post"),
        delete: op("delete"),
        options: op("options"),
        head: op("head"),
        patch: op("patch"),
        parameters: parameters(item),
        vendor_extension: extensions(item),
    }
}

fn operation(op: &Value) -> Operation {
    Operation {
        tags: strings(op, "tags"),
        summary: string(op, "summary"),
        description: string(op, "description"),
        operation_id: string(op, "operationId"),
        produces: strings(op, "produces"),
        consumes: strings(op, "consumes"),
        parameters: parameters(op),
        responses: op
            .get("responses")
            .and_then(Value::as_object)
            .map(|responses| Responses {
                response_code: responses
                    .iter()
                    .filter(|(code, _)| !is_extension(code))
                    .map(|(code, r)| NamedResponseValue {
                        name: code.clone(),
                        value: Some(ResponseValue {
                            oneof: Some(match r.get("$ref").and_then(Value::as_str) {
                                Some(_) => ResponseValueOneof::JsonReference(json_reference(r)),
                                None => ResponseValueOneof::Response(Box::new(Response {
                                    description: string(r, "description"),
                                    schema: r.get("schema").map(|s| SchemaItem {
                                        oneof: Some(SchemaItemOneof::Schema(schema(s))),
                                    }),
                                    vendor_extension: extensions(r),
                                })),
                            }),
                        }),
                    })
                    .collect(),
                vendor_extension: extensions_of(responses),
            }),
        schemes: strings(op, "schemes"),
        deprecated: boolean(op, "deprecated"),
        vendor_extension: extensions(op),
    }
}

fn json_reference(r: &Value) -> JsonReference {
    JsonReference {
        xref: string(r, "$ref"),
        description: string(r, "description"),
    }
}

/// The `parameters` of a path item or an operation.
fn parameters(v: &Value) -> Vec<ParametersItem> {
    let Some(list) = v.get("parameters").and_then(Value::as_array) else {
        return Vec::new();
    };
    list.iter()
        .map(|p| ParametersItem {
            oneof: Some(if p.get("$ref").is_some() {
                ParametersItemOneof::JsonReference(json_reference(p))
            } else {
                ParametersItemOneof::Parameter(parameter(p))
            }),
        })
        .collect()
}

fn parameter(p: &Value) -> Parameter {
    let location = string(p, "in");
    let oneof = if location == "body" {
        ParameterOneof::BodyParameter(Box::new(BodyParameter {
            description: string(p, "description"),
            name: string(p, "name"),
            r#in: location,
            required: boolean(p, "required"),
            schema: p.get("schema").map(schema),
            vendor_extension: extensions(p),
        }))
    } else {
        let simple = SimpleParameter {
            required: boolean(p, "required"),
            r#in: location.clone(),
            description: string(p, "description"),
            name: string(p, "name"),
        };
        ParameterOneof::NonBodyParameter(NonBodyParameter {
            oneof: Some(match location.as_str() {
                "header" => NonBodyParameterOneof::Header(simple),
                "formData" => NonBodyParameterOneof::FormData(simple),
                "path" => NonBodyParameterOneof::Path(simple),
                _ => NonBodyParameterOneof::Query(simple),
            }),
        })
    };
    Parameter { oneof: Some(oneof) }
}

fn named_schemas(schemas: &Map<String, Value>) -> Vec<NamedSchema> {
    schemas
        .iter()
        .map(|(name, s)| NamedSchema {
            name: name.clone(),
            value: Some(schema(s)),
        })
        .collect()
}

/// One JSON schema as gnostic's `Schema`.
fn schema(s: &Value) -> Schema {
    Schema {
        xref: string(s, "$ref"),
        format: string(s, "format"),
        title: string(s, "title"),
        description: string(s, "description"),
        default: s.get("default").map(any),
        multiple_of: number(s, "multipleOf"),
        maximum: number(s, "maximum"),
        exclusive_maximum: boolean(s, "exclusiveMaximum"),
        minimum: number(s, "minimum"),
        exclusive_minimum: boolean(s, "exclusiveMinimum"),
        max_length: integer(s, "maxLength"),
        min_length: integer(s, "minLength"),
        pattern: string(s, "pattern"),
        max_items: integer(s, "maxItems"),
        min_items: integer(s, "minItems"),
        unique_items: boolean(s, "uniqueItems"),
        max_properties: integer(s, "maxProperties"),
        min_properties: integer(s, "minProperties"),
        required: strings(s, "required"),
        r#enum: s
            .get("enum")
            .and_then(Value::as_array)
            .map(|values| values.iter().map(any).collect())
            .unwrap_or_default(),
        additional_properties: s.get("additionalProperties").and_then(|a| {
            let oneof = match a {
                Value::Bool(allowed) => AdditionalPropertiesOneof::Boolean(*allowed),
                Value::Object(_) => AdditionalPropertiesOneof::Schema(Box::new(schema(a))),
                _ => return None,
            };
            Some(AdditionalPropertiesItem { oneof: Some(oneof) })
        }),
        r#type: match s.get("type") {
            Some(Value::String(t)) => Some(TypeItem {
                value: vec![t.clone()],
            }),
            Some(Value::Array(_)) => Some(TypeItem {
                value: strings(s, "type"),
            }),
            _ => None,
        },
        items: match s.get("items") {
            Some(item @ Value::Object(_)) => Some(ItemsItem {
                schema: vec![schema(item)],
            }),
            Some(Value::Array(items)) => Some(ItemsItem {
                schema: items.iter().map(schema).collect(),
            }),
            _ => None,
        },
        all_of: s
            .get("allOf")
            .and_then(Value::as_array)
            .map(|all| all.iter().map(schema).collect())
            .unwrap_or_default(),
        properties: s
            .get("properties")
            .and_then(Value::as_object)
            .map(|properties| Properties {
                additional_properties: named_schemas(properties),
            }),
        discriminator: string(s, "discriminator"),
        read_only: boolean(s, "readOnly"),
        example: s.get("example").map(any),
        vendor_extension: extensions(s),
    }
}

/// A free-form value as gnostic keeps it: YAML text (JSON is YAML).
fn any(value: &Value) -> Any {
    Any {
        value: None,
        yaml: value.to_string(),
    }
}

fn is_extension(key: &str) -> bool {
    key.starts_with("x-")
}

/// The `x-…` members of an object.
fn extensions(v: &Value) -> Vec<NamedAny> {
    v.as_object().map(extensions_of).unwrap_or_default()
}

fn extensions_of(object: &Map<String, Value>) -> Vec<NamedAny> {
    object
        .iter()
        .filter(|(key, _)| is_extension(key))
        .map(|(key, value)| NamedAny {
            name: key.clone(),
            value: Some(any(value)),
        })
        .collect()
}

fn string(v: &Value, key: &str) -> String {
    v.get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

fn strings(v: &Value, key: &str) -> Vec<String> {
    v.get(key)
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

fn boolean(v: &Value, key: &str) -> bool {
    v.get(key).and_then(Value::as_bool).unwrap_or_default()
}

fn number(v: &Value, key: &str) -> f64 {
    v.get(key).and_then(Value::as_f64).unwrap_or_default()
}

fn integer(v: &Value, key: &str) -> i64 {
    v.get(key).and_then(Value::as_i64).unwrap_or_default()
}
