//! PSListModifier: how New/Set change a list-valued field such as AdditionalDomains.
//!
//! A plain list replaces the whole list; `@{Add=…; Remove=…; Replace=…}` edits it (keys
//! case-insensitive; Replace wins over Add and Remove; Remove is applied before Add); `$null` clears.
//! Removing an absent entry is not an error. Results never hold the same entry twice.

/// A change to a list field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListModifier<T> {
    /// A plain list: the new value.
    Set(Vec<T>),
    /// `$null`: empty the list.
    Clear,
    /// A hashtable with any of Add, Remove, Replace.
    Modify {
        add: Vec<T>,
        remove: Vec<T>,
        replace: Option<Vec<T>>,
    },
}

/// A hashtable key that is not Add, Remove or Replace, or one given twice.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ListModifierError {
    #[error("'{0}' is not a valid key: allowed keys are Add, Remove, Replace")]
    UnknownKey(String),
    #[error("the key '{0}' is given more than once")]
    DuplicateKey(String),
}

/// Which key of a PSListModifier hashtable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListModifierKey {
    Add,
    Remove,
    Replace,
}

impl ListModifierKey {
    pub fn parse(key: &str) -> Result<Self, ListModifierError> {
        match key.trim().to_ascii_lowercase().as_str() {
            "add" => Ok(Self::Add),
            "remove" => Ok(Self::Remove),
            "replace" => Ok(Self::Replace),
            _ => Err(ListModifierError::UnknownKey(key.to_owned())),
        }
    }
}

impl<T: PartialEq + Clone> ListModifier<T> {
    /// Build from hashtable entries whose values are already converted.
    pub fn from_entries(
        entries: impl IntoIterator<Item = (ListModifierKey, Vec<T>)>,
    ) -> Result<Self, ListModifierError> {
        let (mut add, mut remove, mut replace) = (None, None, None);
        for (key, values) in entries {
            let slot = match key {
                ListModifierKey::Add => &mut add,
                ListModifierKey::Remove => &mut remove,
                ListModifierKey::Replace => &mut replace,
            };
            if slot.replace(values).is_some() {
                return Err(ListModifierError::DuplicateKey(format!("{key:?}")));
            }
        }
        Ok(ListModifier::Modify {
            add: add.unwrap_or_default(),
            remove: remove.unwrap_or_default(),
            replace,
        })
    }

    /// The list after the change.
    pub fn apply(&self, current: &[T]) -> Vec<T> {
        let mut result: Vec<T> = match self {
            ListModifier::Set(values) => values.clone(),
            ListModifier::Clear => Vec::new(),
            ListModifier::Modify {
                replace: Some(values),
                ..
            } => values.clone(),
            ListModifier::Modify { add, remove, .. } => {
                let mut list: Vec<T> = current
                    .iter()
                    .filter(|item| !remove.contains(item))
                    .cloned()
                    .collect();
                list.extend(add.iter().cloned());
                list
            }
        };
        dedup_keep_first(&mut result);
        result
    }

    /// Convert the entries, keeping the shape (used to turn text into domains).
    pub fn try_map<U, E>(self, mut f: impl FnMut(T) -> Result<U, E>) -> Result<ListModifier<U>, E> {
        let mut convert = |v: Vec<T>| -> Result<Vec<U>, E> { v.into_iter().map(&mut f).collect() };
        Ok(match self {
            ListModifier::Set(v) => ListModifier::Set(convert(v)?),
            ListModifier::Clear => ListModifier::Clear,
            ListModifier::Modify {
                add,
                remove,
                replace,
            } => ListModifier::Modify {
                add: convert(add)?,
                remove: convert(remove)?,
                replace: replace.map(&mut convert).transpose()?,
            },
        })
    }
}

fn dedup_keep_first<T: PartialEq>(list: &mut Vec<T>) {
    let mut i = 0;
    while i < list.len() {
        if list[..i].contains(&list[i]) {
            list.remove(i);
        } else {
            i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ListModifierKey::*;

    fn v(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    fn modify(entries: &[(ListModifierKey, &[&str])]) -> ListModifier<String> {
        ListModifier::from_entries(entries.iter().map(|(k, items)| (*k, v(items)))).unwrap()
    }

    #[test]
    fn plain_list_replaces_and_null_clears() {
        let current = v(&["a", "b"]);
        assert_eq!(ListModifier::Set(v(&["c", "c"])).apply(&current), v(&["c"]));
        assert_eq!(ListModifier::<String>::Clear.apply(&current), v(&[]));
    }

    #[test]
    fn add_remove_replace() {
        let current = v(&["a", "b"]);
        assert_eq!(
            modify(&[(Add, &["c", "a"])]).apply(&current),
            v(&["a", "b", "c"])
        );
        assert_eq!(modify(&[(Remove, &["a", "zz"])]).apply(&current), v(&["b"]));
        assert_eq!(modify(&[(Replace, &["x"])]).apply(&current), v(&["x"]));
    }

    #[test]
    fn conflicting_keys() {
        let current = v(&["a", "b"]);
        // Remove is applied before Add: the entry ends up present.
        assert_eq!(
            modify(&[(Add, &["a"]), (Remove, &["a"])]).apply(&current),
            v(&["b", "a"])
        );
        // Replace wins over Add and Remove.
        assert_eq!(
            modify(&[(Add, &["c"]), (Replace, &["x"]), (Remove, &["x"])]).apply(&current),
            v(&["x"])
        );
        let dup = ListModifier::from_entries([(Add, v(&["a"])), (Add, v(&["b"]))]);
        assert_eq!(dup, Err(ListModifierError::DuplicateKey("Add".into())));
    }

    #[test]
    fn keys_are_case_insensitive_and_checked() {
        assert_eq!(ListModifierKey::parse("ADD"), Ok(Add));
        assert_eq!(ListModifierKey::parse("remove"), Ok(Remove));
        assert_eq!(ListModifierKey::parse("RePlAcE"), Ok(Replace));
        let err = ListModifierKey::parse("Append").unwrap_err();
        assert_eq!(
            err.to_string(),
            "'Append' is not a valid key: allowed keys are Add, Remove, Replace"
        );
    }
}
