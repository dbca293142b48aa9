//! The store contract against every local backend.

use minik_store::open;
use minik_tests::contract_tests;
use minik_tests::store_contract::{Subject, contract_options};

async fn memory() -> Subject {
    let dir = std::path::Path::new("/nonexistent");
    Subject {
        store: open("memory://", dir, contract_options()).await.unwrap(),
        _keep: None,
    }
}

async fn sqlite() -> Subject {
    let dir = tempfile::tempdir().unwrap();
    let store = open("", dir.path(), contract_options()).await.unwrap();
    Subject {
        store,
        _keep: Some(Box::new(dir)),
    }
}

contract_tests!(memory_backend, crate::store_contract::memory);
contract_tests!(sqlite_backend, crate::store_contract::sqlite);
