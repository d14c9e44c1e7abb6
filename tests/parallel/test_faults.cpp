// Faults of `modu train` (MODU_BIN) on 2 ranks under tests/parallel/mpirun.sh (MPIRUN_SH, which runs mpirun
// under launch/mpirun.sh), on a 2-layer, 32-wide gpt-tiny:
//  - a rank SIGKILLed mid-run, and mid-save (MODU_TEST_PAUSE_IN_SAVE holds rank 1 after writing its shard, or
//    rank 0 after writing the manifest but before the rename): the job exits non-zero within 60 s, its output
//    names the lost rank, `latest` names an intact committed checkpoint (the one before the interrupted
//    save), and the job resumes from it and runs on (re-saving the interrupted step);
//  - SIGTERM to the job: exit 0, every rank stopped after the same step, the checkpoint at that step holds
//    every rank's shard (ZeRO-1: each rank's optimizer-state pieces) and no save is left half done;
//  - SIGTERM to one rank only (as a scheduler or a user may do): all ranks agree to stop at the same step.
// Synchronisation is by polling files and log lines with deadlines, never by fixed sleeps. Prints the time
// from each kill to the end of the job. Data: as test_equivalence.cpp (a slice of a Gutenberg text from
// Debian's golang-github-pierrec-lz4-dev, MODU_TEST_BOOK to override), a 384-token BPE trained on it.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <regex>
#include <set>
#include <sstream>
#include <thread>
#include <vector>

#include "checkpoint/checkpoint.h"

extern char** environ;

namespace fs = std::filesystem;
using json = nlohmann::json;
using namespace modu;
using Clock = std::chrono::steady_clock;

namespace {

std::string read_text(const fs::path& p) {
  std::ifstream f(p);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// Calls `done` every 20 ms until it returns true or `timeout_s` passes; returns its last answer.
bool poll_until(const std::function<bool()>& done, double timeout_s) {
  const Clock::time_point start = Clock::now();
  while (!done()) {
    if (seconds_since(start) > timeout_s) return done();
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return true;
}

struct Env {
  fs::path dir;
  Env() {
    dir = fs::temp_directory_path() / ("modu_parallel_faults_" + std::to_string(::getpid()));
    fs::remove_all(dir);
    fs::create_directories(dir);
    const char* env = std::getenv("MODU_TEST_BOOK");
    std::string book = env && *env ? env : "/usr/share/gocode/src/github.com/pierrec/lz4/testdata/pg1661.txt";
    if (!fs::exists(book)) throw std::runtime_error("test text " + book + " is missing: run scripts/install-deps.sh");
    std::ofstream(dir / "book.txt") << read_text(book).substr(0, 100000);
    const std::string q = "'" + dir.string();
    sh(std::string(MODU_BIN) + " prepare tokenizer -q --vocab-size 384 --input " + q + "/book.txt' --out " + q +
       "/tok'");
    sh(std::string(MODU_BIN) + " prepare text -q --input " + q + "/book.txt' --out " + q + "/data' --tokenizer " + q +
       "/tok'");
  }
  ~Env() { fs::remove_all(dir); }
  static void sh(const std::string& cmd) {
    if (std::system(cmd.c_str()) != 0) throw std::runtime_error("failed: " + cmd);
  }
};

Env& env() {
  static Env e;  // removed at exit
  return e;
}

// One `modu train` job on 2 ranks, started without waiting; output in OUT.log. Every process of the job
// carries MODU_FAULT_TEST_JOB=<this test's pid>-<name> in its environment, which is how rank_pid() finds them.
struct Job {
  std::string name;
  fs::path out, log;
  pid_t pid = -1;
  std::optional<int> status;  // waitpid's, once ended

  Job(const std::string& n, const std::vector<std::string>& sets, const std::vector<std::string>& extra_env = {})
      : name(n), out(env().dir / n), log(env().dir / (n + ".log")) {
    const Env& e = env();
    std::vector<std::string> args{MPIRUN_SH, "2", MODU_BIN, "train",
                                  std::string(MODU_SOURCE_DIR) + "/recipes/gpt-tiny.toml"};
    std::vector<std::string> all_sets;
    std::istringstream tiny(
        "model.vocab_size=384 model.n_layer=2 model.n_embd=32 model.n_head=2 model.block_size=32 train.seq_len=32"
        " train.batch_size=4 train.micro_batch_size=2 train.steps=100000 train.log_every=1 train.eval_every=0"
        " train.sample_every=0 train.threads=1 optim.warmup_steps=2 data.val=");
    for (std::string s; tiny >> s;) all_sets.push_back(s);
    all_sets.insert(all_sets.end(), {"data.train=" + (e.dir / "data" / "train").string(),
                                     "data.tokenizer=" + (e.dir / "tok").string(), "train.out_dir=" + out.string()});
    all_sets.insert(all_sets.end(), sets.begin(), sets.end());
    for (const std::string& s : all_sets) args.insert(args.end(), {"--set", s});
    std::vector<std::string> envs;
    for (char** v = environ; *v; ++v)
      if (std::string_view(*v).rfind("MODU_TEST_PAUSE_IN_SAVE=", 0) != 0) envs.emplace_back(*v);
    envs.push_back("MODU_FAULT_TEST_JOB=" + tag());
    envs.insert(envs.end(), extra_env.begin(), extra_env.end());
    std::vector<char*> argv, envp;
    for (std::string& a : args) argv.push_back(a.data());
    for (std::string& v : envs) envp.push_back(v.data());
    argv.push_back(nullptr);
    envp.push_back(nullptr);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    int rc = posix_spawn(&pid, argv[0], &fa, nullptr, argv.data(), envp.data());
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) throw std::runtime_error("posix_spawn " + std::string(MPIRUN_SH) + ": " + std::strerror(rc));
  }
  Job(const Job&) = delete;
  ~Job() {  // a failed test must not leave ranks behind
    if (status) return;
    for (int r : {0, 1})
      if (pid_t p = rank_pid(r); p > 0) ::kill(p, SIGKILL);
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
  }

  std::string tag() const { return std::to_string(::getpid()) + "-" + name; }
  fs::path root() const { return out / "checkpoints"; }
  std::string output() const { return read_text(log); }

  // What a failed expectation prints: how the job ended and the last 60 lines of its output without the
  // effective recipes (each rank prints one; they would fill a CI excerpt and hide the end, where mpirun and
  // a failing rank say what happened).
  std::string report() const {
    std::string how = !status                ? "still running"
                      : WIFEXITED(*status)   ? "exited " + std::to_string(WEXITSTATUS(*status))
                      : WIFSIGNALED(*status) ? "killed by signal " + std::to_string(WTERMSIG(*status))
                                             : "ended with status " + std::to_string(*status);
    std::vector<std::string> kept;
    std::istringstream in(output());
    bool in_recipe = false;
    for (std::string line; std::getline(in, line);) {
      if (line.rfind("# effective recipe:", 0) == 0)
        in_recipe = true;
      else if (in_recipe && !line.empty() && line[0] != '[' && line.find(" = ") == std::string::npos)
        in_recipe = false;  // the first line that is not TOML ends it
      if (!in_recipe) kept.push_back(line);
    }
    const size_t first = kept.size() > 60 ? kept.size() - 60 : 0;
    std::string text = "job " + name + ": " + how + "; its output" + (first > 0 ? " (last 60 lines)" : "") +
                       ", effective recipes left out:\n";
    for (size_t i = first; i < kept.size(); ++i) text += kept[i] + "\n";
    return text;
  }

  // The pid of rank `rank` of this job (its environment has OMPI_COMM_WORLD_RANK), or -1.
  pid_t rank_pid(int rank) const {
    const std::string want_job = "MODU_FAULT_TEST_JOB=" + tag(),
                      want_rank = "OMPI_COMM_WORLD_RANK=" + std::to_string(rank);
    std::error_code ec;
    for (const fs::directory_entry& d : fs::directory_iterator("/proc", ec)) {
      const std::string id = d.path().filename().string();
      if (id.find_first_not_of("0123456789") != std::string::npos) continue;
      std::string environ_text = read_text(d.path() / "environ");
      bool job = false, rank_ok = false;
      for (size_t at = 0; at < environ_text.size();) {
        size_t end = environ_text.find('\0', at);
        if (end == std::string::npos) end = environ_text.size();
        std::string_view v(environ_text.data() + at, end - at);
        job |= v == want_job;
        rank_ok |= v == want_rank;
        at = end + 1;
      }
      if (job && rank_ok) return static_cast<pid_t>(std::stol(id));
    }
    return -1;
  }

  // Waits up to timeout_s for the job to end; true when it did.
  bool wait(double timeout_s) {
    poll_until(
        [&] {
          int st = 0;
          if (::waitpid(pid, &st, WNOHANG) == pid) status = st;
          return status.has_value();
        },
        timeout_s);
    return status.has_value();
  }
  int exit_code() const { return status && WIFEXITED(*status) ? WEXITSTATUS(*status) : -1; }
};

// `latest` names a committed checkpoint of both ranks whose every shard and piece checks out; returns its step.
int64_t expect_latest_intact(const Job& job) {
  std::optional<int64_t> step = checkpoint::latest_step(job.root());
  EXPECT_TRUE(step.has_value()) << job.report();
  if (!step) return -1;
  EXPECT_TRUE(checkpoint::is_committed(job.root(), *step));
  checkpoint::Checkpoint ck = checkpoint::Checkpoint::open(job.root());  // verifies every shard's checksum
  ck.verify_all();                                                       // and every piece's
  EXPECT_EQ(ck.step(), *step);
  EXPECT_EQ(ck.world_size(), 2);
  EXPECT_EQ(ck.metadata().at("step").get<int64_t>(), *step);
  return *step;
}

// Resumes `job`'s run folder on 2 ranks up to `steps` (no fault): exit 0, from `from`, latest == steps.
void expect_resumes(const Job& job, int64_t from, int64_t steps, const std::string& extra_set = "train.log_every=1") {
  Job again(job.name + "_resumed",
            {"train.out_dir=" + job.out.string(), "train.steps=" + std::to_string(steps), extra_set});
  ASSERT_TRUE(again.wait(60)) << again.report();
  const std::string log = again.output();
  EXPECT_EQ(again.exit_code(), 0) << again.report();
  EXPECT_NE(log.find("resumed from " + (job.root() / checkpoint::step_dir_name(from)).string() + " at step " +
                     std::to_string(from)),
            std::string::npos)
      << again.report();
  EXPECT_EQ(checkpoint::latest_step(job.root()).value_or(-1), steps) << again.report();
}

// The job ended after a rank was SIGKILLed: non-zero exit within 60 s, and the output names the lost rank.
void expect_ended_naming(Job& job, int rank, Clock::time_point killed_at, const char* what) {
  ASSERT_TRUE(job.wait(60)) << "the job did not end within 60 s of SIGKILL to rank " << rank << "\n" << job.report();
  const double took = seconds_since(killed_at);
  std::printf("[ figures  ] %s: the job ended %.2f s after SIGKILL to rank %d\n", what, took, rank);
  EXPECT_NE(job.exit_code(), 0);
  const std::string log = job.output();
  EXPECT_TRUE(std::regex_search(log, std::regex("rank " + std::to_string(rank) + "\\b[^\n]*signal 9"))) << job.report();
}

std::set<fs::path> temp_folders(const fs::path& root) {
  std::set<fs::path> found;
  for (const fs::directory_entry& d : fs::directory_iterator(root))
    if (d.path().filename().string().find(".tmp-") != std::string::npos) found.insert(d.path());
  return found;
}

TEST(Faults, RankKilledMidRunEndsTheJobAndLatestResumes) {
  Job job("killed_mid_run", {"train.checkpoint_every=2"});
  ASSERT_TRUE(poll_until([&] { return checkpoint::latest_step(job.root()).value_or(0) >= 4; }, 60)) << job.report();
  pid_t victim = job.rank_pid(1);
  ASSERT_GT(victim, 0);
  ASSERT_EQ(::kill(victim, SIGKILL), 0);
  const Clock::time_point killed_at = Clock::now();
  expect_ended_naming(job, 1, killed_at, "mid-run");
  const int64_t step = expect_latest_intact(job);
  ASSERT_GE(step, 4);
  expect_resumes(job, step, step + 3);
}

// MODU_TEST_PAUSE_IN_SAVE=RANK:4:POINT holds RANK inside the save of step 4; it is killed there.
void killed_mid_save(int rank, const std::string& point) {
  Job job("killed_in_" + point, {"train.checkpoint_every=2"},
          {"MODU_TEST_PAUSE_IN_SAVE=" + std::to_string(rank) + ":4:" + point});
  const std::regex paused("rank " + std::to_string(rank) + " \\(pid ([0-9]+)\\) paused in the save of step 4 at " +
                          point);
  std::smatch m;
  std::string log;
  ASSERT_TRUE(poll_until([&] { return std::regex_search(log = job.output(), m, paused); }, 60)) << job.report();
  ASSERT_EQ(::kill(static_cast<pid_t>(std::stol(m[1].str())), SIGKILL), 0);
  const Clock::time_point killed_at = Clock::now();
  expect_ended_naming(job, rank, killed_at, ("in the save, rank " + std::to_string(rank) + " at " + point).c_str());
  EXPECT_EQ(expect_latest_intact(job), 2) << "`latest` must still name the save before the interrupted one";
  EXPECT_FALSE(checkpoint::is_committed(job.root(), 4));
  std::set<fs::path> tmp = temp_folders(job.root());
  ASSERT_EQ(tmp.size(), 1u) << "the interrupted save of step 4 stays in its temp folder";
  EXPECT_EQ(tmp.begin()->filename().string().rfind(checkpoint::step_dir_name(4), 0), 0u) << *tmp.begin();
  if (point == "manifest_written") {  // complete, manifest and all, but never renamed: still not a checkpoint
    EXPECT_TRUE(fs::exists(*tmp.begin() / "manifest.json"));
    EXPECT_THROW(checkpoint::Checkpoint::open(*tmp.begin()), std::exception);
  }
  expect_resumes(job, 2, 5, "train.checkpoint_every=2");  // saves step 4 again, under a new temp name, then 5
  EXPECT_TRUE(checkpoint::is_committed(job.root(), 4));
}

TEST(Faults, RankKilledAfterWritingItsShardLeavesTheLastCommittedCheckpoint) { killed_mid_save(1, "shard_written"); }
TEST(Faults, CommitterKilledAfterTheManifestLeavesTheLastCommittedCheckpoint) {
  killed_mid_save(0, "manifest_written");
}

// Stops a running ZeRO-1 job with SIGTERM to `target` (the job, or one rank): exit 0 and one checkpoint at
// the step every rank finished, holding every rank's shard and optimizer-state pieces.
void sigterm_stops_all_ranks_together(const std::string& name, bool to_one_rank) {
  Job job(name, {"train.checkpoint_every=0", "parallel.zero=1"});
  ASSERT_TRUE(poll_until([&] { return job.output().find("\nstep 3/") != std::string::npos; }, 60)) << job.report();
  const pid_t target = to_one_rank ? job.rank_pid(1) : job.pid;
  ASSERT_GT(target, 0);
  ASSERT_EQ(::kill(target, SIGTERM), 0);
  const Clock::time_point signalled_at = Clock::now();
  ASSERT_TRUE(job.wait(60)) << job.report();
  std::printf("[ figures  ] SIGTERM to %s: the job exited %.2f s later\n", to_one_rank ? "rank 1" : "the job",
              seconds_since(signalled_at));
  const std::string log = job.output();
  EXPECT_EQ(job.exit_code(), 0) << job.report();  // mpirun's: 0 only when every rank exited 0
  std::smatch m;
  ASSERT_TRUE(std::regex_search(log, m, std::regex("stopped by [^\n]* after step ([0-9]+)"))) << job.report();
  const int64_t stopped = std::stoll(m[1].str());
  EXPECT_GE(stopped, 3);
  EXPECT_EQ(expect_latest_intact(job), stopped);
  EXPECT_EQ(checkpoint::committed_steps(job.root()), std::vector<int64_t>{stopped}) << "one save, at the stop";
  EXPECT_TRUE(temp_folders(job.root()).empty()) << "no save left half done";
  // Every rank's shard is in it: both shard files, and ZeRO-1's optimizer state in pieces from both ranks.
  const json manifest = json::parse(read_text(job.root() / checkpoint::step_dir_name(stopped) / "manifest.json"));
  std::set<int> shard_ranks, optim_ranks;
  for (const json& s : manifest.at("shards")) shard_ranks.insert(s.at("rank").get<int>());
  for (const json& t : manifest.at("tensors"))
    if (t.at("name").get<std::string>().rfind("optim/", 0) == 0)
      for (const json& p : t.at("pieces")) optim_ranks.insert(p.at("rank").get<int>());
  EXPECT_EQ(shard_ranks, (std::set<int>{0, 1}));
  EXPECT_EQ(optim_ranks, (std::set<int>{0, 1}));
  // Rank 0's metrics end at the committed step: no rank went on past it.
  int64_t last_logged = 0;
  std::ifstream metrics(job.out / "metrics.jsonl");
  for (std::string line; std::getline(metrics, line);) last_logged = json::parse(line).value("step", last_logged);
  EXPECT_EQ(last_logged, stopped);
}

TEST(Faults, SigtermToTheJobCommitsOneCheckpointOnAllRanksAndExitsZero) {
  sigterm_stops_all_ranks_together("sigterm_job", false);
}
TEST(Faults, SigtermToOneRankStopsEveryRankAtTheSameStep) { sigterm_stops_all_ranks_together("sigterm_rank1", true); }

}  // namespace
