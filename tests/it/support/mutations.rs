//! Catalog edits as GeoServer performs them on disk, for tests that change a master's data
//! directory while gscluster watches it.
//!
//! Every mutation writes referenced objects before their referrers and removes referrers before
//! what they refer to, bumps `<updateSequence>` in global.xml last, and returns the relative paths
//! it wrote or removed, in order. `random_ops` keeps the catalog consistent (no dangling id), so
//! any reference problem a slave's reload sees was introduced by replication, not by the test.

use std::fs;
use std::path::Path;

use super::generator::{Catalog, Rng, Tx};
use super::model::{gwc_file, ResourceKind};
use super::templates as t;

impl Catalog {
    /// Publishes a new layer (resource, layer, GWC tile layer) in the `store_index`-th store of the
    /// `ws_index`-th workspace.
    pub fn add_layer(
        &mut self,
        root: &Path,
        ws_index: usize,
        store_index: usize,
        name: &str,
    ) -> Vec<String> {
        let ws = self.workspaces[ws_index].name.clone();
        let si = (0..self.stores.len())
            .filter(|&i| self.stores[i].workspace == ws)
            .nth(store_index)
            .unwrap_or_else(|| panic!("workspace {ws} has no store #{store_index}"));
        assert!(
            !self
                .layers
                .iter()
                .any(|l| l.workspace == ws && l.name == name),
            "layer {ws}:{name} already exists"
        );
        let mut tx = Tx {
            root,
            touched: vec![],
        };
        self.create_layer(&mut tx, si, Some(name));
        self.finish(tx)
    }

    /// Changes the title and abstract (kept on the resource) and the layer's dateModified.
    pub fn modify_layer(&mut self, root: &Path, layer_id: &str) -> Vec<String> {
        self.serial += 1;
        let serial = self.serial;
        let layer = self
            .layers
            .iter_mut()
            .find(|l| l.id == layer_id)
            .expect("layer");
        layer.title = format!("{} — révision {serial}", layer.name);
        layer.abstract_ = format!("Modifié par le test, révision {serial}");
        let mut tx = Tx {
            root,
            touched: vec![],
        };
        self.rewrite_layer(&mut tx, layer_id);
        self.finish(tx)
    }

    /// Removes the layer from its groups, then its GWC file, layer.xml, resource file and folder.
    pub fn delete_layer(&mut self, root: &Path, layer_id: &str) -> Vec<String> {
        let mut tx = Tx {
            root,
            touched: vec![],
        };
        self.remove_layer(&mut tx, layer_id);
        self.finish(tx)
    }

    /// A rename moves the folder: on disk every old path disappears and new ones appear, ids stay.
    pub fn rename_layer(&mut self, root: &Path, layer_id: &str, new_name: &str) -> Vec<String> {
        let mut tx = Tx {
            root,
            touched: vec![],
        };
        let old = self.layer(layer_id).clone();
        let store_dir = old.dir.rsplit_once('/').unwrap().0.to_string();
        let new_dir = format!("{store_dir}/{new_name}");
        assert!(!root.join(&new_dir).exists(), "{new_dir} already exists");
        let files = super::node::tree(&root.join(&old.dir), &[]);
        fs::rename(root.join(&old.dir), root.join(&new_dir)).unwrap();
        tx.touched
            .extend(files.keys().map(|f| format!("{}/{f}", old.dir)));
        tx.touched
            .extend(files.keys().map(|f| format!("{new_dir}/{f}")));
        let layer = self.layers.iter_mut().find(|l| l.id == layer_id).unwrap();
        layer.name = new_name.to_string();
        layer.title = new_name.to_string();
        layer.dir = new_dir;
        let qualified = format!("{}:{new_name}", layer.workspace);
        let gwc = layer.gwc_file();
        self.rewrite_layer(&mut tx, layer_id);
        tx.write(&gwc, t::gwc_layer_xml(layer_id, &qualified));
        self.finish(tx)
    }

    /// A new datastore, with no layer yet, in the `ws_index`-th workspace.
    pub fn add_store(&mut self, root: &Path, ws_index: usize) -> Vec<String> {
        let ws = self.workspaces[ws_index].clone();
        let mut tx = Tx {
            root,
            touched: vec![],
        };
        self.create_store(&mut tx, &ws, ResourceKind::FeatureType);
        self.finish(tx)
    }

    /// A new password on a datastore's connection, as its edit page saves it.
    pub fn modify_store(&mut self, root: &Path, store_id: &str) -> Vec<String> {
        let store = (self.stores.iter().find(|s| s.id == store_id))
            .expect("store")
            .clone();
        let ws = self.workspace(&store.workspace).clone();
        let secret = format!("{:016x}{:016x}=", self.rng.next_u64(), self.rng.next_u64());
        let file = match store.kind {
            ResourceKind::FeatureType => "datastore.xml",
            ResourceKind::Coverage => "coveragestore.xml",
        };
        let mut tx = Tx {
            root,
            touched: vec![],
        };
        tx.write(
            &format!("{}/{file}", store.dir),
            t::store_xml(&store, &ws, &secret),
        );
        self.finish(tx)
    }

    /// A store deleted with everything in it, as GeoServer's recursive delete leaves the disk:
    /// its layers taken out of groups and their tile layers removed, then the store's folder
    /// (its layers' folders are inside it).
    pub fn delete_store(&mut self, root: &Path, store_id: &str) -> Vec<String> {
        let store = (self.stores.iter().find(|s| s.id == store_id))
            .expect("store")
            .clone();
        let mut tx = Tx {
            root,
            touched: vec![],
        };
        let ids: Vec<String> = (self.layers.iter())
            .filter(|l| l.store_id == store_id)
            .map(|l| l.id.clone())
            .collect();
        self.detach_layers(&mut tx, &ids);
        for id in &ids {
            tx.remove(&gwc_file(id));
        }
        tx.remove_dir(&store.dir);
        self.layers.retain(|l| l.store_id != store_id);
        self.stores.retain(|s| s.id != store_id);
        self.finish(tx)
    }

    /// The workspace's "isolated" flag toggled: workspace.xml and namespace.xml rewritten (and
    /// `workspaces/default.xml` when it is the default workspace).
    pub fn modify_workspace(&mut self, root: &Path, name: &str) -> Vec<String> {
        let ws = (self.workspaces.iter_mut().find(|w| w.name == name)).expect("workspace");
        ws.isolated = !ws.isolated;
        let ws = ws.clone();
        let mut tx = Tx {
            root,
            touched: vec![],
        };
        let dir = format!("workspaces/{name}");
        tx.write(&format!("{dir}/workspace.xml"), t::workspace_xml(&ws));
        tx.write(&format!("{dir}/namespace.xml"), t::namespace_xml(&ws));
        if self.default_workspace.as_deref() == Some(name) {
            tx.write("workspaces/default.xml", t::workspace_xml(&ws));
        }
        self.finish(tx)
    }

    /// A global style: icon and body first, then NAME.xml.
    pub fn add_style(&mut self, root: &Path, name: &str) -> Vec<String> {
        assert!(
            !self.styles.iter().any(|s| s.name == name),
            "style {name} already exists"
        );
        let mut tx = Tx {
            root,
            touched: vec![],
        };
        self.create_style(&mut tx, None, Some(name));
        self.finish(tx)
    }

    /// Rewrites only the SLD body, as the style editor does.
    pub fn modify_style_body(&mut self, root: &Path, name: &str) -> Vec<String> {
        self.serial += 1;
        let style = self.style(name).clone();
        let mut tx = Tx {
            root,
            touched: vec![],
        };
        tx.write(&style.body_path(), t::sld(&style, self.serial));
        self.finish(tx)
    }

    /// Deletes NAME.xml, then its body and icon. Panics if a layer or group still uses the style:
    /// GeoServer refuses that too, and a test doing it has a bug.
    pub fn delete_style(&mut self, root: &Path, name: &str) -> Vec<String> {
        let style = self.style(name).clone();
        assert!(
            !self.style_in_use(&style.id),
            "style {name} is still in use"
        );
        let mut tx = Tx {
            root,
            touched: vec![],
        };
        tx.remove(&style.xml_file());
        tx.remove(&style.body_path());
        if let Some(icon) = &style.icon {
            tx.remove(icon);
        }
        self.styles.retain(|s| s.id != style.id);
        self.finish(tx)
    }

    /// Workspace + namespace (+ its style), one datastore and one layer in it.
    pub fn add_workspace(&mut self, root: &Path, name: &str) -> Vec<String> {
        assert!(
            !self.workspaces.iter().any(|w| w.name == name),
            "workspace {name} already exists"
        );
        let mut tx = Tx {
            root,
            touched: vec![],
        };
        let ws = self.create_workspace(&mut tx, Some(name));
        let si = self.create_store(&mut tx, &ws, ResourceKind::FeatureType);
        self.create_layer(&mut tx, si, None);
        self.finish(tx)
    }

    /// `rm -r` of the workspace folder, after taking its layers out of global groups, removing
    /// their tile layers and moving `workspaces/default.xml` to another workspace.
    pub fn delete_workspace(&mut self, root: &Path, name: &str) -> Vec<String> {
        let mut tx = Tx {
            root,
            touched: vec![],
        };
        let ids: Vec<String> = self
            .layers
            .iter()
            .filter(|l| l.workspace == name)
            .map(|l| l.id.clone())
            .collect();
        self.detach_layers(&mut tx, &ids);
        for id in &ids {
            tx.remove(&gwc_file(id));
        }
        if self.default_workspace.as_deref() == Some(name) {
            self.default_workspace = self
                .workspaces
                .iter()
                .find(|w| w.name != name)
                .map(|w| w.name.clone());
            match &self.default_workspace {
                Some(other) => {
                    let xml = t::workspace_xml(self.workspace(other));
                    tx.write("workspaces/default.xml", xml);
                }
                None => tx.remove("workspaces/default.xml"),
            }
        }
        tx.remove_dir(&format!("workspaces/{name}"));
        self.layers.retain(|l| l.workspace != name);
        self.stores.retain(|s| s.workspace != name);
        self.styles.retain(|s| s.workspace.as_deref() != Some(name));
        self.workspaces.retain(|w| w.name != name);
        self.finish(tx)
    }

    /// A global layer group over up to three existing layers, and its tile layer.
    pub fn add_group(&mut self, root: &Path, name: &str) -> Vec<String> {
        let mut tx = Tx {
            root,
            touched: vec![],
        };
        self.create_group(&mut tx, Some(name));
        self.finish(tx)
    }

    /// One more layer published in the group (when one is left to add), saved with a new
    /// dateModified.
    pub fn modify_group(&mut self, root: &Path, group_id: &str) -> Vec<String> {
        self.serial += 1;
        let serial = self.serial;
        let i = (self.groups.iter().position(|g| g.id == group_id)).expect("group");
        let outside: Vec<String> = (self.layers.iter())
            .filter(|l| !self.groups[i].layers.contains(&l.id))
            .map(|l| l.id.clone())
            .collect();
        if !outside.is_empty() {
            let layer = outside[self.rng.below(outside.len())].clone();
            self.groups[i].layers.push(layer);
            self.groups[i].styles.push(None);
        }
        let mut tx = Tx {
            root,
            touched: vec![],
        };
        tx.write(
            &self.groups[i].file(),
            t::group_xml(&self.groups[i], serial),
        );
        self.finish(tx)
    }

    /// The group's tile layer, then the group.
    pub fn delete_group(&mut self, root: &Path, group_id: &str) -> Vec<String> {
        let group = (self.groups.iter().find(|g| g.id == group_id))
            .expect("group")
            .clone();
        let mut tx = Tx {
            root,
            touched: vec![],
        };
        tx.remove(&gwc_file(&group.id));
        tx.remove(&group.file());
        self.groups.retain(|g| g.id != group_id);
        self.finish(tx)
    }

    /// Applies `n` random mutations chosen by `rng_seed` and returns how many were applied (always
    /// `n`: an operation that does not apply, such as deleting from an empty catalog, is replaced
    /// by one that does). The catalog stays free of dangling references throughout.
    pub fn random_ops(&mut self, root: &Path, n: usize, rng_seed: u64) -> usize {
        let mut rng = Rng::new(rng_seed);
        for _ in 0..n {
            self.random_op(root, &mut rng);
        }
        n
    }

    fn random_op(&mut self, root: &Path, rng: &mut Rng) -> Vec<String> {
        self.serial += 1;
        let serial = self.serial;
        let pick_layer =
            |cat: &Catalog, rng: &mut Rng| cat.layers[rng.below(cat.layers.len())].id.clone();
        let unused: Vec<String> = (self.styles.iter())
            .filter(|s| s.workspace.is_none() && !self.style_in_use(&s.id))
            .map(|s| s.name.clone())
            .collect();
        match rng.below(17) {
            0..=2 if !self.stores.is_empty() => {
                let store = self.stores[rng.below(self.stores.len())].clone();
                let wi = self
                    .workspaces
                    .iter()
                    .position(|w| w.name == store.workspace)
                    .unwrap();
                let si = self
                    .stores
                    .iter()
                    .filter(|s| s.workspace == store.workspace)
                    .position(|s| s.id == store.id);
                self.add_layer(root, wi, si.unwrap(), &format!("couche {serial}"))
            }
            3 if !self.layers.is_empty() => {
                let id = pick_layer(self, rng);
                self.modify_layer(root, &id)
            }
            4 if !self.layers.is_empty() => {
                let id = pick_layer(self, rng);
                self.delete_layer(root, &id)
            }
            5 if !self.layers.is_empty() => {
                let id = pick_layer(self, rng);
                self.rename_layer(root, &id, &format!("renommée {serial}"))
            }
            6 => self.add_style(root, &format!("style {serial}")),
            7 if !self.styles.is_empty() => {
                let name = self.styles[rng.below(self.styles.len())].name.clone();
                self.modify_style_body(root, &name)
            }
            8 if !unused.is_empty() => self.delete_style(root, &unused[rng.below(unused.len())]),
            9 if self.workspaces.len() > 1 => {
                let name = self.workspaces[rng.below(self.workspaces.len())]
                    .name
                    .clone();
                self.delete_workspace(root, &name)
            }
            10 if !self.layers.is_empty() => self.add_group(root, &format!("groupe_{serial}")),
            11 if !self.workspaces.is_empty() => {
                let wi = rng.below(self.workspaces.len());
                self.add_store(root, wi)
            }
            12 if !self.stores.is_empty() => {
                let id = self.stores[rng.below(self.stores.len())].id.clone();
                self.modify_store(root, &id)
            }
            // Keep a few stores for new layers to go in.
            13 if self.stores.len() > 3 => {
                let id = self.stores[rng.below(self.stores.len())].id.clone();
                self.delete_store(root, &id)
            }
            14 if !self.groups.is_empty() => {
                let id = self.groups[rng.below(self.groups.len())].id.clone();
                self.modify_group(root, &id)
            }
            15 if !self.groups.is_empty() => {
                let id = self.groups[rng.below(self.groups.len())].id.clone();
                self.delete_group(root, &id)
            }
            16 if !self.workspaces.is_empty() => {
                let name = self.workspaces[rng.below(self.workspaces.len())]
                    .name
                    .clone();
                self.modify_workspace(root, &name)
            }
            _ => self.add_workspace(root, &format!("espace_{serial}")),
        }
    }
}
