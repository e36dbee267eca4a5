#include "consensus/raft_log.h"

#include "common/check.h"

namespace cl::raft {

RaftLog::RaftLog(SnapshotMeta snapshot, std::vector<Entry> entries) : snapshot_(std::move(snapshot)) {
  for (Entry& e : entries) {
    CL_CHECK_MSG(e.index == last_index() + 1, "restored log entries are not contiguous");
    CL_CHECK_MSG(e.term >= last_term(), "restored log terms decrease");
    entries_.push_back(std::move(e));
  }
  stabled_ = last_index();
}

Term RaftLog::last_term() const { return entries_.empty() ? snapshot_.term : entries_.back().term; }

std::optional<Term> RaftLog::term_at(Index i) const {
  if (i == snapshot_.index) return snapshot_.term;
  if (i < first_index() || i > last_index()) return std::nullopt;
  return entries_[i - first_index()].term;
}

const Entry* RaftLog::entry_at(Index i) const {
  if (i < first_index() || i > last_index()) return nullptr;
  return &entries_[i - first_index()];
}

void RaftLog::append(Entry e) {
  CL_CHECK(e.index == last_index() + 1);
  CL_CHECK(e.term >= last_term());
  entries_.push_back(std::move(e));
}

Index RaftLog::append_after_match(const std::vector<Entry>& entries) {
  Index removed_from = 0;
  for (const Entry& e : entries) {
    if (e.index <= last_index()) {
      if (term_at(e.index) == e.term) continue;  // already have it (log matching)
      // Conflict: delete this entry and all that follow it (Fig. 3.1, AppendEntries step 3).
      CL_CHECK(e.index >= first_index());
      removed_from = e.index;
      entries_.resize(e.index - first_index());
      if (stabled_ >= e.index) stabled_ = e.index - 1;
    }
    CL_CHECK(e.index == last_index() + 1);
    entries_.push_back(e);
  }
  return removed_from;
}

std::vector<Entry> RaftLog::slice(Index from, size_t max_count, size_t max_bytes) const {
  CL_CHECK(from >= first_index());
  std::vector<Entry> out;
  size_t bytes = 0;
  for (Index i = from; i <= last_index() && out.size() < max_count; ++i) {
    const Entry& e = entries_[i - first_index()];
    if (!out.empty() && bytes + e.data.size() > max_bytes) break;
    bytes += e.data.size();
    out.push_back(e);
  }
  return out;
}

std::vector<Entry> RaftLog::unstable(Index upto) const {
  std::vector<Entry> out;
  for (Index i = stabled_ + 1; i <= upto && i <= last_index(); ++i) out.push_back(entries_[i - first_index()]);
  return out;
}

void RaftLog::stable_to(Index i, Term t) {
  if (i > stabled_ && term_at(i) == t) stabled_ = i;
}

Index RaftLog::find_conflict_by_term(Index i, Term t) const {
  if (i > last_index()) i = last_index();
  while (i > snapshot_.index) {
    std::optional<Term> term = term_at(i);
    if (!term || *term <= t) break;
    --i;
  }
  return i;
}

void RaftLog::compact(const SnapshotMeta& meta) {
  CL_CHECK(meta.index >= first_index() && meta.index <= stabled_);
  CL_CHECK(term_at(meta.index) == meta.term);
  entries_.erase(entries_.begin(), entries_.begin() + static_cast<std::ptrdiff_t>(meta.index - snapshot_.index));
  snapshot_ = meta;
}

void RaftLog::restore(const SnapshotMeta& meta) {
  CL_CHECK(meta.index > snapshot_.index);
  if (term_at(meta.index) == meta.term) {
    entries_.erase(entries_.begin(), entries_.begin() + static_cast<std::ptrdiff_t>(meta.index - snapshot_.index));
  } else {
    entries_.clear();
  }
  snapshot_ = meta;
  stabled_ = meta.index;
}

}  // namespace cl::raft
