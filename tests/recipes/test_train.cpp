// tests/recipes/test_train.cpp — the GPT training loop end to end on real text: it learns, resume is
// bit-identical (with dropout and gradient accumulation on), a damaged checkpoint is refused by name,
// SIGTERM commits a checkpoint and exits cleanly, `generate` samples from the result, and (on CUDA, run by
// tests/gpu/run.sh) the whole DP path through a one-rank NCCL communicator matches plain training.
#include <gtest/gtest.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "checkpoint/checkpoint.h"
#include "core/ops/ops.h"
#include "data/prepare.h"
#include "recipes/entry.h"

namespace fs = std::filesystem;
using json = nlohmann::json;
using namespace modu;

namespace {

// Plain Gutenberg text that Debian's golang-github-pierrec-lz4-dev ships (scripts/install-deps.sh);
// MODU_TEST_BOOK names another copy (the GPU machine has no Debian packages).
std::string book_path() {
  const char* env = std::getenv("MODU_TEST_BOOK");
  return env && *env ? env : "/usr/share/gocode/src/github.com/pierrec/lz4/testdata/pg1661.txt";
}
// MODU_TEST_DEVICE (e.g. "cuda") trains on another device (tests/gpu/run.sh).
std::string test_device() {
  const char* env = std::getenv("MODU_TEST_DEVICE");
  return env && *env ? env : "cpu";
}

struct Data {
  fs::path dir;
  Data() {
    dir = fs::temp_directory_path() / ("modu_train_test_" + std::to_string(::getpid()));
    fs::remove_all(dir);
    fs::create_directories(dir);
    std::string book = book_path();
    MODU_CHECK(fs::exists(book), "test data ", book, " is missing: run scripts/install-deps.sh");
    data::TrainTokenizerOptions t;
    t.inputs = {book};
    t.out_dir = (dir / "tok").string();
    t.vocab_size = 384;
    data::train_tokenizer(t);
    data::PrepareTextOptions p;
    p.inputs = {book};
    p.out_dir = (dir / "data").string();
    p.tokenizer = t.out_dir;
    p.val_fraction = 0.1;
    data::prepare_text(p);
  }
  ~Data() { fs::remove_all(dir); }
};

Data& data_once() {
  static Data* d = new Data();
  return *d;
}

recipes::Config tiny_recipe(const fs::path& out, std::vector<std::string> overrides = {}) {
  Data& d = data_once();
  std::string toml = R"(
[model]
arch = "gpt2"
vocab_size = 384
pad_vocab_to = 64
n_layer = 2
n_head = 2
n_embd = 32
block_size = 32
dropout = 0.1
[train]
steps = 6
batch_size = 4
micro_batch_size = 2
seq_len = 32
log_every = 1
eval_every = 3
eval_batches = 2
checkpoint_every = 3
seed = 7
[optim]
lr = 3e-3
min_lr = 3e-4
warmup_steps = 2
)";
  recipes::Config c;
  c.load_string(toml, "test recipe");
  c.add_override("data.train=" + (d.dir / "data" / "train").string());
  c.add_override("data.val=" + (d.dir / "data" / "val").string());
  c.add_override("data.tokenizer=" + (d.dir / "tok").string());
  c.add_override("train.out_dir=" + out.string());
  c.add_override("train.device=" + test_device());
  for (const auto& o : overrides) c.add_override(o);
  recipes::declare_recipe_schema(c);
  c.finalize();
  return c;
}

// (step -> loss) and (step -> val_loss) from metrics.jsonl.
std::map<int64_t, double> read_metric(const fs::path& out, const char* key) {
  std::map<int64_t, double> m;
  std::ifstream f(out / "metrics.jsonl");
  for (std::string line; std::getline(f, line);) {
    json j = json::parse(line);
    if (j.contains(key) && !j[key].is_null()) m[j["step"].get<int64_t>()] = j[key].get<double>();
  }
  return m;
}

fs::path fresh(const std::string& name) {
  fs::path p = data_once().dir / name;
  fs::remove_all(p);
  return p;
}

}  // namespace

TEST(Train, LossFallsAndMetricsAreWritten) {
  fs::path out = fresh("learn");
  ASSERT_EQ(recipes::train_main(tiny_recipe(out, {"train.steps=40", "model.dropout=0.0", "train.eval_every=20"})), 0);
  auto loss = read_metric(out, "loss");
  auto val = read_metric(out, "val_loss");
  ASSERT_EQ(loss.size(), 40u);
  EXPECT_LT(loss[40], loss[1] - 1.0) << "40 steps must bring the loss well below its start (" << loss[1] << ")";
  ASSERT_TRUE(val.count(0) && val.count(40));
  EXPECT_LT(val[40], val[0] - 1.0);
  EXPECT_NEAR(val[0], std::log(384.0), 0.3);  // an untrained model is about uniform
  EXPECT_EQ(checkpoint::latest_step(out / "checkpoints"), std::optional<int64_t>(40));
}

TEST(Train, ResumeIsBitIdentical) {
  fs::path straight = fresh("straight"), resumed = fresh("resumed");
  ASSERT_EQ(recipes::train_main(tiny_recipe(straight)), 0);
  ASSERT_EQ(recipes::train_main(tiny_recipe(resumed, {"train.stop_after=3"})), 0);
  EXPECT_EQ(checkpoint::latest_step(resumed / "checkpoints"), std::optional<int64_t>(3));
  ASSERT_EQ(recipes::train_main(tiny_recipe(resumed)), 0);  // resume = auto
  auto a = read_metric(straight, "loss"), b = read_metric(resumed, "loss");
  ASSERT_EQ(a.size(), 6u);
  ASSERT_EQ(b.size(), 6u);
  for (auto& [step, loss] : a) EXPECT_EQ(loss, b[step]) << "step " << step;  // bit for bit
  auto va = read_metric(straight, "val_loss"), vb = read_metric(resumed, "val_loss");
  EXPECT_EQ(va[6], vb[6]);
  checkpoint::Checkpoint ca = checkpoint::Checkpoint::open(straight / "checkpoints");
  checkpoint::Checkpoint cb = checkpoint::Checkpoint::open(resumed / "checkpoints");
  ASSERT_EQ(ca.step(), 6);
  ASSERT_EQ(cb.step(), 6);
  ASSERT_EQ(ca.tensor_names(), cb.tensor_names());
  for (const std::string& name : ca.tensor_names()) {
    std::vector<float> x = ca.read(name).to_vector<float>(), y = cb.read(name).to_vector<float>();
    EXPECT_EQ(x, y) << name;
  }
  EXPECT_EQ(ca.metadata()["data"]["position"], cb.metadata()["data"]["position"]);
}

TEST(Train, DamagedCheckpointIsRefusedByName) {
  fs::path out = fresh("damaged");
  ASSERT_EQ(recipes::train_main(tiny_recipe(out, {"train.stop_after=3"})), 0);
  fs::path shard;
  for (auto& e : fs::directory_iterator(out / "checkpoints" / "step_00000003"))
    if (e.path().extension() == ".h5") shard = e.path();
  ASSERT_FALSE(shard.empty());
  {
    std::fstream f(shard, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(static_cast<std::streamoff>(fs::file_size(shard) / 2));
    char c = 0;
    f.read(&c, 1);
    f.seekp(static_cast<std::streamoff>(fs::file_size(shard) / 2));
    c = static_cast<char>(c ^ 0x5a);
    f.write(&c, 1);
  }
  try {
    recipes::train_main(tiny_recipe(out));
    FAIL() << "resuming from a damaged checkpoint must fail";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find(shard.filename().string()), std::string::npos) << e.what();
  }
  EXPECT_TRUE(fs::exists(shard)) << "a failed resume must not delete the checkpoint";
}

TEST(Train, SigtermCommitsACheckpointAndExitsZero) {
  fs::path out = fresh("sigterm");
  std::thread killer([] {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    std::raise(SIGTERM);
  });
  int rc = recipes::train_main(tiny_recipe(out, {"train.steps=100000", "train.eval_every=0", "train.checkpoint_every=0"}));
  killer.join();
  EXPECT_EQ(rc, 0);
  std::optional<int64_t> step = checkpoint::latest_step(out / "checkpoints");
  ASSERT_TRUE(step.has_value());
  EXPECT_GT(*step, 0);
  EXPECT_LT(*step, 100000);
}

TEST(Train, GenerateSamplesFromTheCheckpoint) {
  fs::path out = fresh("generate");
  ASSERT_EQ(recipes::train_main(tiny_recipe(out, {"train.stop_after=3"})), 0);
  recipes::GenerateOptions g;
  g.checkpoint_dir = out.string();
  g.prompt = "Sherlock Holmes";
  g.max_new_tokens = 8;
  g.temperature = 0;
  testing::internal::CaptureStdout();
  EXPECT_EQ(recipes::generate_main(g), 0);
  std::string first = testing::internal::GetCapturedStdout();
  testing::internal::CaptureStdout();
  recipes::generate_main(g);
  std::string second = testing::internal::GetCapturedStdout();
  EXPECT_EQ(first, second) << "greedy decoding is deterministic";
  EXPECT_EQ(first.rfind("Sherlock Holmes", 0), 0u) << first;
  EXPECT_GT(first.size(), std::string("Sherlock Holmes\n").size());
}

TEST(Train, RecipeErrorsNameTheKey) {
  fs::path out = fresh("errors");
  try {
    tiny_recipe(out, {"train.stpes=5"});
    FAIL();
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("train.stpes"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("train.steps"), std::string::npos) << e.what();
  }
  try {
    recipes::train_main(tiny_recipe(out, {"train.batch_size=3"}));
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("train.batch_size"), std::string::npos) << e.what();
  }
  try {
    recipes::train_main(tiny_recipe(out, {"model.n_head=3"}));
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("n_head"), std::string::npos) << e.what();
  }
}

// The whole data-parallel path through the NCCL communicator on one GPU (parallel.comm = nccl forces the
// bucketed gradient averaging, ZeRO 0/1/2, even with one rank): the same losses and weights as plain training
// on the same device, within 1e-6 (one rank's average is the gradient itself; ZeRO updates flat pieces with the
// same element-wise AdamW). On the CPU the recipe is refused with the fix (NCCL carries CUDA tensors).
TEST(Train, NcclDataParallelPathOnOneDeviceMatchesPlainTraining) {
  if (test_device().rfind("cuda", 0) != 0) {
    fs::path out = fresh("nccl_on_cpu");
    try {
      recipes::train_main(tiny_recipe(out, {"parallel.comm=nccl"}));
      FAIL() << "parallel.comm = nccl must be refused on the CPU";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("train.device = cuda"), std::string::npos) << e.what();
    }
    return;
  }
  fs::path plain = fresh("nccl_plain");
  ASSERT_EQ(recipes::train_main(tiny_recipe(plain)), 0);
  auto ref = read_metric(plain, "loss");
  ASSERT_EQ(ref.size(), 6u);
  checkpoint::Checkpoint ref_ck = checkpoint::Checkpoint::open(plain / "checkpoints");
  for (int zero : {0, 1, 2}) {
    fs::path out = fresh("nccl_zero" + std::to_string(zero));
    ASSERT_EQ(recipes::train_main(tiny_recipe(out, {"parallel.comm=nccl", "parallel.zero=" + std::to_string(zero)})),
              0);
    auto loss = read_metric(out, "loss");
    ASSERT_EQ(loss.size(), 6u);
    double worst = 0;
    for (auto& [step, l] : ref) worst = std::max(worst, std::abs(loss[step] - l) / std::abs(l));
    checkpoint::Checkpoint ck = checkpoint::Checkpoint::open(out / "checkpoints");
    double worst_w = 0;
    for (const std::string& name : ref_ck.tensor_names()) {
      if (name.rfind("model/", 0) != 0) continue;
      std::vector<float> x = ref_ck.read(name).to_vector<float>(), y = ck.read(name).to_vector<float>();
      ASSERT_EQ(x.size(), y.size()) << name;
      for (size_t i = 0; i < x.size(); ++i) worst_w = std::max(worst_w, double(std::abs(x[i] - y[i])));
    }
    std::printf("NCCL one-rank DP path, ZeRO-%d vs plain: max rel loss diff %.3e, max abs weight diff %.3e\n", zero,
                worst, worst_w);
    EXPECT_LE(worst, 1e-6) << "ZeRO-" << zero;
    EXPECT_LE(worst_w, 1e-6) << "ZeRO-" << zero;
  }
}
