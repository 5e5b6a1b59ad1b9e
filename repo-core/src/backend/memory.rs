//! An in-memory backend for tests and examples.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use super::{check_name, Backend, FileType};
use crate::error::{Error, ErrorKind, Result};

type ObjectMap = BTreeMap<(FileType, String), Arc<Vec<u8>>>;

/// Objects held in a map; clones share the same storage.
#[derive(Debug, Clone, Default)]
pub struct MemoryBackend {
    objects: Arc<Mutex<ObjectMap>>,
}

impl MemoryBackend {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn map(&self) -> MutexGuard<'_, ObjectMap> {
        // A poisoned map still holds consistent objects: every insert is a single operation.
        self.objects
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Replaces an object's bytes (tests that corrupt a repository). The name is not checked:
    /// a test may plant what a hostile store could list.
    pub fn put_raw(&self, file_type: FileType, name: &str, data: Vec<u8>) {
        let _ = self
            .map()
            .insert((file_type, name.to_string()), Arc::new(data));
    }

    fn get(&self, file_type: FileType, name: &str) -> Result<Arc<Vec<u8>>> {
        check_name(file_type, name)?;
        self.map()
            .get(&(file_type, name.to_string()))
            .cloned()
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::NotFound,
                    format!("{}/{name}: not found", file_type.dir()),
                )
            })
    }
}

impl Backend for MemoryBackend {
    fn location(&self) -> String {
        "memory:".to_string()
    }

    fn create(&self) -> Result<()> {
        // Key files alone are what an interrupted init leaves.
        if self.map().keys().all(|(t, _)| *t == FileType::Key) {
            Ok(())
        } else {
            Err(Error::invalid("memory: already holds objects"))
        }
    }

    fn write(&self, file_type: FileType, name: &str, data: &[u8]) -> Result<()> {
        check_name(file_type, name)?;
        let _ = self
            .map()
            .insert((file_type, name.to_string()), Arc::new(data.to_vec()));
        Ok(())
    }

    fn read(&self, file_type: FileType, name: &str) -> Result<Vec<u8>> {
        Ok(self.get(file_type, name)?.as_ref().clone())
    }

    fn read_range(
        &self,
        file_type: FileType,
        name: &str,
        offset: u64,
        len: u32,
    ) -> Result<Vec<u8>> {
        let data = self.get(file_type, name)?;
        let end = offset
            .checked_add(u64::from(len))
            .filter(|e| *e <= data.len() as u64)
            .ok_or_else(|| {
                Error::backend(
                    format!(
                        "{}/{name}: range {offset}+{len} beyond length {}",
                        file_type.dir(),
                        data.len()
                    ),
                    false,
                )
            })?;
        Ok(data[offset as usize..end as usize].to_vec())
    }

    fn list(&self, file_type: FileType) -> Result<Vec<(String, u64)>> {
        Ok(self
            .map()
            .iter()
            .filter(|((t, _), _)| *t == file_type)
            .map(|((_, name), data)| (name.clone(), data.len() as u64))
            .collect())
    }

    fn size(&self, file_type: FileType, name: &str) -> Result<u64> {
        Ok(self.get(file_type, name)?.len() as u64)
    }

    fn delete(&self, file_type: FileType, name: &str) -> Result<()> {
        check_name(file_type, name)?;
        let _ = self.map().remove(&(file_type, name.to_string()));
        Ok(())
    }
}
