//! create: settle metadata, admit, default and validate, allocate claims, write.

use serde_json::{Value, json};

use super::{
    Registry, RegistryError, Request, Written,
    claims::Write,
    metadata,
    prepare::{Checked, check},
};
use crate::{admission::Operation, model::meta};

impl Registry {
    /// Create `object` (name from `metadata.name` or `generateName`, namespace from the
    /// request).
    pub async fn create(
        &self,
        request: &Request<'_>,
        mut object: Value,
    ) -> Result<Written, RegistryError> {
        let resource = request.resource;
        metadata::settle_identity(resource, request.namespace, &mut object)?;
        metadata::stamp_create(&mut object);
        if metadata::resets_status_on_create(resource)
            && let Some(map) = object.as_object_mut()
        {
            map.remove("status");
        }
        let name = meta::name(&object).to_owned();
        let attributes = request.admission(Operation::Create, &name);
        let mut warnings = Vec::new();
        self.admission
            .admit(&attributes, &mut object, None, &mut warnings)
            .await?;
        let Checked {
            mut object,
            warnings: unknown,
        } = check(resource, request.field_validation, &object, None)?;
        warnings.extend(unknown);
        self.admission
            .validate(&attributes, &object, None, &mut warnings)
            .await?;
        metadata::set_generation(&mut object, None);
        let revision = self
            .allocate_and_write(request, &mut object, None, Write::Create)
            .await?;
        if !request.dry_run {
            meta::set_meta(&mut object, "resourceVersion", json!(revision.to_string()));
        }
        Ok(Written { object, warnings })
    }
}
