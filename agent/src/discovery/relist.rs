//! What a watch stream has announced, so that the end of a re-list can tell which objects
//! disappeared while the watch was down and which are (possibly new) survivors.

use std::collections::HashSet;

use kube::{Resource, ResourceExt};

/// An object's namespace and name.
pub(super) type ObjectKey = (String, String);

/// The key of `object`.
pub(super) fn key_of<K: Resource>(object: &K) -> ObjectKey {
    (object.namespace().unwrap_or_default(), object.name_any())
}

/// The bookkeeping of one watch stream across re-lists (`Init` … `InitApply`* … `InitDone`).
#[derive(Debug, Default)]
pub(super) struct Relist {
    /// Announced and not deleted, as of the last completed list plus the events since.
    known: HashSet<ObjectKey>,
    /// Seen in the list under way.
    listed: HashSet<ObjectKey>,
}

/// The outcome of a completed re-list.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Listed {
    /// Known before, absent from the list: deleted while the watch was down.
    pub gone: Vec<ObjectKey>,
    /// Everything the list held (created or changed while the watch was down, for all the
    /// consumer can tell).
    pub present: HashSet<ObjectKey>,
}

impl Relist {
    /// `Init`: a list begins.
    pub fn begin(&mut self) {
        self.listed.clear();
    }

    /// `InitApply`: `key` is in the list.
    pub fn listed(&mut self, key: ObjectKey) {
        self.listed.insert(key.clone());
        self.known.insert(key);
    }

    /// `Apply`: `key` exists.
    pub fn applied(&mut self, key: ObjectKey) {
        self.known.insert(key);
    }

    /// `Delete`: `key` is gone.
    pub fn deleted(&mut self, key: &ObjectKey) {
        self.known.remove(key);
    }

    /// `InitDone`: the list is complete; what it lacks is gone.
    pub fn done(&mut self) -> Listed {
        let present = std::mem::take(&mut self.listed);
        let gone = self.known.difference(&present).cloned().collect();
        self.known = present.clone();
        Listed { gone, present }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> ObjectKey {
        ("ns".to_owned(), name.to_owned())
    }

    #[test]
    fn a_relist_reports_what_disappeared_and_what_is_there() {
        let mut relist = Relist::default();
        relist.begin();
        relist.listed(key("a"));
        relist.listed(key("b"));
        assert_eq!(relist.done().gone, Vec::<ObjectKey>::new());
        relist.applied(key("c"));
        relist.deleted(&key("b"));
        relist.begin();
        relist.listed(key("d"));
        let listed = relist.done();
        let mut gone = listed.gone;
        gone.sort();
        assert_eq!(gone, vec![key("a"), key("c")]);
        assert_eq!(listed.present, HashSet::from([key("d")]));
        relist.begin();
        assert_eq!(relist.done().gone, vec![key("d")]);
    }
}
