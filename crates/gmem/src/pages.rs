//! Page ownership of one file, as pure data: who holds each page, and which
//! page ranges the host currently has views of. Every transition checks the
//! whole range first and changes nothing on error. No syscalls here; the
//! file layer calls in under its lock and does the I/O.

use std::collections::BTreeMap;
use std::ops::Range;

use binding::{IntervalMap, PAGE_SIZE, VmId};

use crate::Error;

/// Who holds a page of a guest memory file (DESIGN §6 invariant 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum PageState {
    /// Not bound: only the host uses it.
    #[default]
    Host,
    /// Bound with a share binding: host and guest both use it.
    Shared(VmId),
    /// Bound with a lend binding the guest has not touched yet: the host may
    /// still use it (DESIGN D2), e.g. to load an image.
    LendBound(VmId),
    /// Lent: the guest has it and the host has no access.
    Lent(VmId),
    /// Lent, and being taken back from the guest right now.
    Reclaiming(VmId),
}

impl PageState {
    /// The VM the page is bound to, if any.
    pub fn vm(self) -> Option<VmId> {
        match self {
            PageState::Host => None,
            PageState::Shared(v)
            | PageState::LendBound(v)
            | PageState::Lent(v)
            | PageState::Reclaiming(v) => Some(v),
        }
    }

    /// True if the host must not touch the page.
    pub fn is_lent(self) -> bool {
        matches!(self, PageState::Lent(_) | PageState::Reclaiming(_))
    }
}

impl std::fmt::Display for PageState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PageState::Host => f.write_str("host-owned"),
            PageState::Shared(v) => write!(f, "shared with VM {v}"),
            PageState::LendBound(v) => write!(f, "lend-bound to VM {v} (not yet touched)"),
            PageState::Lent(v) => write!(f, "lent to VM {v}"),
            PageState::Reclaiming(v) => write!(f, "being reclaimed from VM {v}"),
        }
    }
}

/// A total map from pages to values, stored as maximal runs of equal,
/// non-default values in a [`binding::IntervalMap`]: O(log n) per change in
/// the number of runs. Pages without a run hold `T::default()`.
#[derive(Debug, Clone, Default)]
pub struct RangeMap<T> {
    runs: IntervalMap<T>,
}

impl<T: Copy + PartialEq + Default> RangeMap<T> {
    /// An empty map: every page holds the default.
    pub fn new() -> Self {
        RangeMap {
            runs: IntervalMap::new(),
        }
    }

    /// The value of one page.
    pub fn get(&self, page: u64) -> T {
        self.runs.get(page).map(|(_, v)| *v).unwrap_or_default()
    }

    /// The runs covering `r` exactly, default gaps included, in order.
    pub fn runs(&self, r: Range<u64>) -> Vec<(Range<u64>, T)> {
        let mut out: Vec<(Range<u64>, T)> = Vec::new();
        let mut push = |range: Range<u64>, v: T| {
            if range.is_empty() {
                return;
            }
            match out.last_mut() {
                Some((last, lv)) if last.end == range.start && *lv == v => last.end = range.end,
                _ => out.push((range, v)),
            }
        };
        let mut at = r.start;
        for (run, &v) in self.runs.overlapping(r.clone()) {
            let start = run.start.max(r.start);
            push(at..start, T::default());
            let end = run.end.min(r.end);
            push(start..end, v);
            at = end;
        }
        push(at..r.end, T::default());
        out
    }

    /// Set every page of `r` to `v`.
    pub fn set(&mut self, r: Range<u64>, v: T) {
        if r.is_empty() {
            return;
        }
        self.runs.carve(r.clone());
        if v == T::default() {
            return;
        }
        // Merge with equal neighbours so runs stay maximal.
        let mut run = r;
        if let Some(left) = run.start.checked_sub(1)
            && let Some((l, &lv)) = self.runs.get(left)
            && lv == v
        {
            self.runs.remove(l.start);
            run.start = l.start;
        }
        if let Some((n, &nv)) = self.runs.get(run.end)
            && nv == v
        {
            self.runs.remove(n.start);
            run.end = n.end;
        }
        // The range was carved free and the neighbours merged in, so the
        // insert cannot overlap anything.
        let _ = self.runs.insert(run, v);
    }

    /// Number of stored runs (for tests and metrics).
    pub fn run_count(&self) -> usize {
        self.runs.len()
    }
}

/// Page ownership plus the table of live host views of one file.
#[derive(Debug)]
pub struct Ownership {
    pages: u64,
    /// Pages the file has now: all of them, except for a resizable file,
    /// whose mapping covers its capacity while only these exist (a touch
    /// past them would be SIGBUS: every host access checks them first).
    backed: u64,
    states: RangeMap<PageState>,
    /// Live host views by id. Few at a time, so lookups scan them.
    views: BTreeMap<u64, Range<u64>>,
    /// The ids in `views` that are lendvm's own host views (the rest are
    /// a program's mappings, [`Ownership::add_user_view`]).
    host_views: std::collections::BTreeSet<u64>,
    next_view: u64,
}

fn byte(page: u64) -> u64 {
    page * PAGE_SIZE
}

impl Ownership {
    /// Ownership of a file of `pages` pages, all host-owned, no views.
    pub fn new(pages: u64) -> Ownership {
        Ownership {
            pages,
            backed: pages,
            states: RangeMap::new(),
            views: BTreeMap::new(),
            host_views: std::collections::BTreeSet::new(),
            next_view: 0,
        }
    }

    /// Number of pages in the file.
    pub fn pages(&self) -> u64 {
        self.pages
    }

    fn check(&self, r: &Range<u64>) -> Result<(), Error> {
        if r.start > r.end || r.end > self.pages {
            return Err(Error::OutOfBounds {
                offset: byte(r.start),
                len: byte(r.end.saturating_sub(r.start)),
                size: byte(self.pages),
            });
        }
        Ok(())
    }

    /// Pages the file has now.
    pub fn backed(&self) -> u64 {
        self.backed
    }

    /// `r` lies inside the pages the file has now.
    pub fn check_backed(&self, r: &Range<u64>) -> Result<(), Error> {
        self.check(r)?;
        if r.end > self.backed {
            return Err(Error::OutOfBounds {
                offset: byte(r.start),
                len: byte(r.end - r.start),
                size: byte(self.backed),
            });
        }
        Ok(())
    }

    /// The file now has `pages` pages (a resizable file's `ftruncate`).
    /// Shrinking under one of lendvm's host views is EBUSY: its pages
    /// would be gone. A program's own mapping may outlive the end, as with
    /// any file (touching past it is the program's SIGBUS).
    pub fn set_backed(&mut self, pages: u64) -> Result<(), Error> {
        self.check(&(0..pages))?;
        if let Some(v) = self
            .host_views
            .iter()
            .filter_map(|id| self.views.get(id))
            .find(|v| v.end > pages)
        {
            return Err(Error::Busy {
                offset: byte(v.start.max(pages)),
                why: "the host has a view of it",
            });
        }
        self.backed = pages;
        Ok(())
    }

    /// The state of one page.
    pub fn state(&self, page: u64) -> PageState {
        self.states.get(page)
    }

    /// The state runs covering `r`.
    pub fn runs(&self, r: Range<u64>) -> Vec<(Range<u64>, PageState)> {
        self.states.runs(r)
    }

    /// Every page of `r` must satisfy `ok`; else the first that does not.
    fn require(
        &self,
        r: &Range<u64>,
        wanted: &'static str,
        ok: impl Fn(PageState) -> bool,
    ) -> Result<(), Error> {
        self.check(r)?;
        match self
            .states
            .runs(r.clone())
            .into_iter()
            .find(|(_, s)| !ok(*s))
        {
            Some((run, found)) => Err(Error::WrongState {
                offset: byte(run.start),
                found,
                wanted,
            }),
            None => Ok(()),
        }
    }

    /// Host-owned pages become shared with `vm` (a share binding).
    pub fn share(&mut self, r: Range<u64>, vm: VmId) -> Result<(), Error> {
        self.require(&r, "sharing", |s| s == PageState::Host)?;
        self.states.set(r, PageState::Shared(vm));
        Ok(())
    }

    /// Host-owned pages become lend-bound to `vm` (a lend binding).
    pub fn lend_bind(&mut self, r: Range<u64>, vm: VmId) -> Result<(), Error> {
        self.require(&r, "lend binding", |s| s == PageState::Host)?;
        self.states.set(r, PageState::LendBound(vm));
        Ok(())
    }

    /// The guest of `vm` touched a page of `window`, its demand chunk: lend
    /// the whole window (DESIGN D2), all or nothing. Every page must be
    /// lend-bound or lent to `vm` (else `WrongState`: e.g. being reclaimed)
    /// and no host view may intersect the window (else `Busy`: SPEC
    /// GM-MM-6). Returns the runs that were lend-bound and are lent now.
    pub fn lend_window(&mut self, window: Range<u64>, vm: VmId) -> Result<Vec<Range<u64>>, Error> {
        self.require(&window, "lending", |s| {
            s == PageState::LendBound(vm) || s == PageState::Lent(vm)
        })?;
        if let Some(v) = self
            .views
            .values()
            .find(|v| v.start < window.end && window.start < v.end)
        {
            return Err(Error::Busy {
                offset: byte(v.start.max(window.start)),
                why: "the host has a view of it",
            });
        }
        let fresh = self
            .states
            .runs(window.clone())
            .into_iter()
            .filter(|(_, s)| *s == PageState::LendBound(vm))
            .map(|(r, _)| r)
            .collect();
        self.states.set(window, PageState::Lent(vm));
        Ok(fresh)
    }

    /// Shared pages of `vm` become lent to it (START's DTB hand-over from a
    /// share binding, SPEC B-AC-5). `Busy` if a host view intersects them.
    pub fn lend_shared(&mut self, r: Range<u64>, vm: VmId) -> Result<(), Error> {
        self.require(&r, "lending shared pages", |s| {
            s == PageState::Shared(vm) || s == PageState::Lent(vm)
        })?;
        if let Some(v) = self
            .views
            .values()
            .find(|v| v.start < r.end && r.start < v.end)
        {
            return Err(Error::Busy {
                offset: byte(v.start.max(r.start)),
                why: "the host has a view of it",
            });
        }
        self.states.set(r, PageState::Lent(vm));
        Ok(())
    }

    /// Undo a lend the guest never saw (installing it failed): lent pages
    /// of `vm` in `r` become lend-bound again, content untouched.
    pub fn cancel_lend(&mut self, r: Range<u64>, vm: VmId) -> Result<(), Error> {
        self.require(&r, "cancelling a lend", |s| {
            s == PageState::Lent(vm) || s == PageState::LendBound(vm)
        })?;
        self.states.set(r, PageState::LendBound(vm));
        Ok(())
    }

    /// Start taking lent pages in `r` back: they become `Reclaiming` (the
    /// guest cannot be given them meanwhile). Returns the runs per VM.
    pub fn begin_reclaim(&mut self, r: Range<u64>) -> Result<Vec<(Range<u64>, VmId)>, Error> {
        self.check(&r)?;
        let runs = self.states.runs(r);
        if let Some((run, _)) = runs
            .iter()
            .find(|(_, s)| matches!(s, PageState::Reclaiming(_)))
        {
            return Err(Error::Busy {
                offset: byte(run.start),
                why: "another reclaim of it is in progress",
            });
        }
        let lent: Vec<(Range<u64>, VmId)> = runs
            .into_iter()
            .filter_map(|(run, s)| match s {
                PageState::Lent(vm) => Some((run, vm)),
                _ => None,
            })
            .collect();
        for (run, vm) in &lent {
            self.states.set(run.clone(), PageState::Reclaiming(*vm));
        }
        Ok(lent)
    }

    /// Finish a reclaim: on success the pages are lend-bound again (the
    /// binding still exists, SPEC L-5); on failure they stay lent.
    pub fn finish_reclaim(&mut self, runs: &[(Range<u64>, VmId)], ok: bool) {
        for (run, vm) in runs {
            let next = if ok {
                PageState::LendBound(*vm)
            } else {
                PageState::Lent(*vm)
            };
            self.states.set(run.clone(), next);
        }
    }

    /// The binding of `vm` over `r` is gone: the pages return to the host.
    /// Returns the runs that were lent, whose content must be zeroed before
    /// the host can see it (DESIGN D5).
    pub fn release(&mut self, r: Range<u64>, vm: VmId) -> Result<Vec<Range<u64>>, Error> {
        let lent = self.release_check(r.clone(), vm)?;
        self.states.set(r, PageState::Host);
        Ok(lent)
    }

    /// What [`Ownership::release`] would do, without doing it: the lent
    /// runs to zero, or why the release is refused.
    pub fn release_check(&self, r: Range<u64>, vm: VmId) -> Result<Vec<Range<u64>>, Error> {
        self.require(&r, "release", |s| {
            matches!(s, PageState::Shared(v) | PageState::LendBound(v) | PageState::Lent(v) if v == vm)
        })?;
        Ok(self
            .states
            .runs(r)
            .into_iter()
            .filter(|(_, s)| matches!(s, PageState::Lent(_)))
            .map(|(run, _)| run)
            .collect())
    }

    /// The host may access `r`: no page in it is lent (DESIGN D4: one lent
    /// page refuses the whole access).
    pub fn check_host_access(&self, r: Range<u64>) -> Result<(), Error> {
        self.check_backed(&r)?;
        match self.states.runs(r).into_iter().find(|(_, s)| s.is_lent()) {
            Some((run, s)) => Err(Error::Lent {
                offset: byte(run.start),
                vm: s.vm().unwrap_or(VmId(u32::MAX)),
            }),
            None => Ok(()),
        }
    }

    /// Punch hole may free `r`: no page in it is lent (DESIGN D10).
    pub fn check_punch(&self, r: Range<u64>) -> Result<(), Error> {
        self.check(&r)?;
        match self.states.runs(r).into_iter().find(|(_, s)| s.is_lent()) {
            Some((run, _)) => Err(Error::Busy {
                offset: byte(run.start),
                why: "it is lent to a VM and cannot be freed (reclaim it first)",
            }),
            None => Ok(()),
        }
    }

    /// Register a host view of `r`; refused over lent pages.
    pub fn add_view(&mut self, r: Range<u64>) -> Result<u64, Error> {
        self.check_host_access(r.clone())?;
        let id = self.next_view;
        self.next_view += 1;
        self.views.insert(id, r);
        self.host_views.insert(id);
        Ok(id)
    }

    /// Register a mapping the program made of the file itself (a
    /// [`crate::UserView`]). Unlike [`Ownership::add_view`] it is allowed
    /// over lent pages, which its owner keeps inaccessible; like a view it
    /// keeps every page it covers from being lent meanwhile (SPEC GM-MM-6).
    pub fn add_user_view(&mut self, r: Range<u64>) -> Result<u64, Error> {
        self.check(&r)?;
        let id = self.next_view;
        self.next_view += 1;
        self.views.insert(id, r);
        Ok(id)
    }

    /// Forget a host view (after it was unmapped).
    pub fn remove_view(&mut self, id: u64) {
        self.views.remove(&id);
        self.host_views.remove(&id);
    }

    /// Number of live host views that intersect `r`.
    pub fn views_over(&self, r: Range<u64>) -> usize {
        self.views
            .values()
            .filter(|v| v.start < r.end && r.start < v.end)
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const A: VmId = VmId(1);
    const B: VmId = VmId(2);

    /// A page-by-page model of `RangeMap`.
    fn model_runs(model: &[u8], r: Range<u64>) -> Vec<(Range<u64>, u8)> {
        let mut out: Vec<(Range<u64>, u8)> = Vec::new();
        for p in r {
            let v = model[p as usize];
            match out.last_mut() {
                Some((last, lv)) if *lv == v => last.end = p + 1,
                _ => out.push((p..p + 1, v)),
            }
        }
        out
    }

    proptest! {
        #[test]
        fn range_map_matches_a_page_array(
            ops in proptest::collection::vec((0u64..64, 0u64..64, 0u8..3), 1..60),
            query in (0u64..64, 0u64..64),
        ) {
            let mut map = RangeMap::<u8>::new();
            let mut model = vec![0u8; 64];
            for (a, b, v) in ops {
                let r = a.min(b)..a.max(b);
                map.set(r.clone(), v);
                for p in r { model[p as usize] = v; }
                // Runs are maximal and never store the default.
                let all = map.runs(0..64);
                prop_assert_eq!(&all, &model_runs(&model, 0..64));
                let stored = all.iter().filter(|(_, v)| *v != 0).count();
                prop_assert_eq!(map.run_count(), stored);
            }
            let q = query.0.min(query.1)..query.0.max(query.1);
            prop_assert_eq!(map.runs(q.clone()), model_runs(&model, q));
            for p in 0..64 { prop_assert_eq!(map.get(p), model[p as usize]); }
        }
    }

    #[test]
    fn share_and_lend_bind_need_host_owned_pages() {
        let mut o = Ownership::new(16);
        o.share(0..4, A).unwrap();
        o.lend_bind(4..8, A).unwrap();
        let err = o.lend_bind(3..6, B).unwrap_err();
        assert!(
            matches!(err, Error::WrongState { offset: 0x3000, .. }),
            "{err}"
        );
        // Nothing changed by the failed call.
        assert_eq!(o.state(3), PageState::Shared(A));
        assert_eq!(o.state(5), PageState::LendBound(A));
        assert_eq!(o.state(8), PageState::Host);
    }

    #[test]
    fn lend_window_lends_the_whole_chunk_or_nothing() {
        let mut o = Ownership::new(32);
        o.lend_bind(0..32, A).unwrap();
        let v = o.add_view(10..12).unwrap();
        // DESIGN D2: a view anywhere in the chunk refuses the whole chunk.
        let err = o.lend_window(0..16, A).unwrap_err();
        assert_eq!(err.errno(), libc::EBUSY);
        assert_eq!(o.runs(0..32), vec![(0..32, PageState::LendBound(A))]);
        // A chunk the view does not touch is lent whole.
        assert_eq!(o.lend_window(16..32, A).unwrap(), vec![16..32]);
        o.remove_view(v);
        assert_eq!(o.lend_window(0..16, A).unwrap(), vec![0..16]);
        // Lending an already lent chunk again lends nothing new.
        assert_eq!(o.lend_window(0..32, A).unwrap(), Vec::<Range<u64>>::new());
        // Pages of another VM or unbound pages are never lent.
        let mut o = Ownership::new(8);
        o.lend_bind(2..4, A).unwrap();
        o.lend_bind(4..6, B).unwrap();
        assert_eq!(o.lend_window(2..4, A).unwrap(), vec![2..4]);
        assert!(o.lend_window(2..6, A).is_err());
        assert!(o.lend_window(0..3, A).is_err());
        assert_eq!(o.state(4), PageState::LendBound(B));
    }

    #[test]
    fn lent_pages_refuse_host_access_views_and_punch() {
        let mut o = Ownership::new(8);
        o.lend_bind(0..8, A).unwrap();
        // DESIGN D2: lend-bound but untouched pages are still host-usable.
        o.check_host_access(0..8).unwrap();
        o.lend_window(2..3, A).unwrap();
        // DESIGN D4: one lent page refuses the whole range.
        let err = o.check_host_access(0..8).unwrap_err();
        assert!(
            matches!(
                err,
                Error::Lent {
                    offset: 0x2000,
                    vm: A
                }
            ),
            "{err}"
        );
        assert!(o.add_view(1..3).is_err());
        assert_eq!(o.views_over(0..8), 0);
        // DESIGN D10 / SPEC GM-FA-7.
        assert_eq!(o.check_punch(0..8).unwrap_err().errno(), libc::EBUSY);
        o.check_punch(3..8).unwrap();
    }

    #[test]
    fn reclaim_returns_pages_to_lend_bound_or_back_to_lent() {
        let mut o = Ownership::new(8);
        o.lend_bind(0..8, A).unwrap();
        o.lend_window(0..8, A).unwrap();
        let runs = o.begin_reclaim(2..4).unwrap();
        assert_eq!(runs, vec![(2..4, A)]);
        assert_eq!(o.state(2), PageState::Reclaiming(A));
        // The guest cannot re-take a page under reclaim.
        assert!(o.lend_window(0..8, A).is_err());
        assert!(o.begin_reclaim(3..5).is_err());
        o.finish_reclaim(&runs, true);
        assert_eq!(o.state(2), PageState::LendBound(A));
        // SPEC L-5: a reclaimed page can be lent again.
        assert_eq!(o.lend_window(2..4, A).unwrap(), vec![2..4]);
        let runs = o.begin_reclaim(0..8).unwrap();
        o.finish_reclaim(&runs, false);
        assert_eq!(o.runs(0..8), vec![(0..8, PageState::Lent(A))]);
    }

    #[test]
    fn release_returns_everything_and_reports_lent_runs() {
        let mut o = Ownership::new(12);
        o.lend_bind(0..8, A).unwrap();
        o.share(8..12, A).unwrap();
        o.lend_window(1..3, A).unwrap();
        o.lend_window(5..7, A).unwrap();
        // Another VM's release of the range is refused and changes nothing.
        assert!(o.release(0..12, B).is_err());
        assert_eq!(o.state(1), PageState::Lent(A));
        let lent = o.release(0..12, A).unwrap();
        assert_eq!(lent, vec![1..3, 5..7]);
        assert_eq!(o.runs(0..12), vec![(0..12, PageState::Host)]);
    }

    #[test]
    fn ranges_outside_the_file_are_errors() {
        let mut o = Ownership::new(4);
        assert_eq!(o.share(2..5, A).unwrap_err().errno(), libc::EFAULT);
        assert!(o.check_host_access(4..5).is_err());
        assert!(o.lend_window(0..9, A).is_err());
        assert_eq!(o.runs(0..4), vec![(0..4, PageState::Host)]);
    }
}
