// Tests of recipe loading (recipes/config.h) and progress output (recipes/metrics.h): schema
// validation and its error messages, --set typing, the effective recipe and its reload, the
// metrics.jsonl writer and the progress line.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "core/check.h"
#include "recipes/config.h"
#include "recipes/metrics.h"

namespace fs = std::filesystem;
using modu::recipes::Config;

namespace {

fs::path temp_dir() {
  fs::path p = fs::temp_directory_path() /
               ("modu_config_test_" + std::to_string(::getpid()) + "_" +
                ::testing::UnitTest::GetInstance()->current_test_info()->name());
  fs::remove_all(p);
  fs::create_directories(p);
  return p;
}

void declare_schema(Config& c) {
  c.declare<int64_t>("train.steps", 1000, "optimizer steps")
      .declare<int64_t>("train.batch_size", 8, "sequences per step")
      .declare<double>("optim.lr", 6e-4, "peak learning rate")
      .declare<double>("optim.weight_decay", 0.1, "AdamW decoupled weight decay")
      .declare<bool>("train.compile", false, "fuse kernels")
      .declare<std::string>("data.path", "data/shards", "token shard directory")
      .declare<std::string>("name", "gpt2", "run name")
      .declare<int64_t>("model.attn.heads", 12, "attention heads");
}

const char* kRecipe = R"(# a test recipe
name = "tiny"

[train]
steps = 50
batch_size = 4

[optim]
lr = 1e-3
weight_decay = 0   # an integer for a float key is fine

[model.attn]
heads = 4
)";

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const modu::Error& e) {
    return e.what();
  }
  return "(no error)";
}

Config loaded(const std::string& text, const std::vector<std::string>& sets = {}) {
  Config c;
  c.load_string(text, "tiny.toml");
  for (const auto& s : sets) c.add_override(s);
  declare_schema(c);
  c.finalize();
  return c;
}

}  // namespace

TEST(Config, FileValuesAndDefaults) {
  Config c = loaded(kRecipe);
  EXPECT_EQ(c.get<int64_t>("train.steps"), 50);
  EXPECT_EQ(c.get<int64_t>("train.batch_size"), 4);
  EXPECT_DOUBLE_EQ(c.get<double>("optim.lr"), 1e-3);
  EXPECT_DOUBLE_EQ(c.get<double>("optim.weight_decay"), 0.0);
  EXPECT_FALSE(c.get<bool>("train.compile"));
  EXPECT_EQ(c.get<std::string>("data.path"), "data/shards");
  EXPECT_EQ(c.get<std::string>("name"), "tiny");
  EXPECT_EQ(c.get<int64_t>("model.attn.heads"), 4);
  EXPECT_TRUE(c.is_default("data.path"));
  EXPECT_EQ(c.origin("train.steps"), "tiny.toml:5");
  EXPECT_NE(error_of([&] { c.get<double>("train.steps"); }).find("declared as an integer"), std::string::npos);
  EXPECT_NE(error_of([&] { c.get<int64_t>("train.nope"); }).find("never declared"), std::string::npos);
}

TEST(Config, SetOverridesAreTyped) {
  Config c = loaded(kRecipe, {"optim.lr=3e-4", "train.steps=1_000", "train.compile=true",
                              "data.path=/tmp/x y/shards", "name=\"quoted # name\"", "optim.weight_decay=1",
                              "train.steps=2000"});
  EXPECT_DOUBLE_EQ(c.get<double>("optim.lr"), 3e-4);
  EXPECT_EQ(c.get<int64_t>("train.steps"), 2000);  // the last --set wins
  EXPECT_TRUE(c.get<bool>("train.compile"));
  EXPECT_EQ(c.get<std::string>("data.path"), "/tmp/x y/shards");  // unquoted: literal
  EXPECT_EQ(c.get<std::string>("name"), "quoted # name");
  EXPECT_DOUBLE_EQ(c.get<double>("optim.weight_decay"), 1.0);
  EXPECT_EQ(c.origin("optim.lr"), "--set");
  // A string key given a number-looking value keeps the text.
  EXPECT_EQ(loaded(kRecipe, {"name=123"}).get<std::string>("name"), "123");
}

TEST(Config, UnknownKeysNameKeyFileAndSuggestion) {
  std::string msg = error_of([] { loaded("[train]\nstep = 5\n"); });
  EXPECT_NE(msg.find("tiny.toml:2"), std::string::npos) << msg;
  EXPECT_NE(msg.find("unknown key 'train.step'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("did you mean 'train.steps'"), std::string::npos) << msg;

  msg = error_of([] { loaded(kRecipe, {"optim.lrr=1"}); });
  EXPECT_NE(msg.find("--set optim.lrr=1"), std::string::npos) << msg;
  EXPECT_NE(msg.find("unknown key 'optim.lrr'"), std::string::npos) << msg;
  EXPECT_NE(msg.find("tiny.toml"), std::string::npos) << msg;
  EXPECT_NE(msg.find("did you mean 'optim.lr'"), std::string::npos) << msg;

  msg = error_of([] { loaded("steps = 5\n"); });  // the table was forgotten
  EXPECT_NE(msg.find("did you mean 'train.steps'"), std::string::npos) << msg;

  msg = error_of([] { loaded("completely_unrelated_thing = 5\n"); });
  EXPECT_EQ(msg.find("did you mean"), std::string::npos) << msg;

  // Several problems are reported together.
  msg = error_of([] { loaded("[train]\nstep = 5\nbatch_size = \"x\"\n"); });
  EXPECT_NE(msg.find("2 problems"), std::string::npos) << msg;
}

TEST(Config, BadTypesNameKeyFileAndExpectedType) {
  std::string msg = error_of([] { loaded("[train]\nsteps = 3.5\n"); });
  EXPECT_NE(msg.find("tiny.toml:2"), std::string::npos) << msg;
  EXPECT_NE(msg.find("train.steps"), std::string::npos) << msg;
  EXPECT_NE(msg.find("expected an integer"), std::string::npos) << msg;
  EXPECT_NE(msg.find("got a float"), std::string::npos) << msg;

  msg = error_of([] { loaded(kRecipe, {"train.compile=yes"}); });
  EXPECT_NE(msg.find("train.compile"), std::string::npos) << msg;
  EXPECT_NE(msg.find("expected a boolean"), std::string::npos) << msg;

  msg = error_of([] { loaded(kRecipe, {"optim.lr=fast"}); });
  EXPECT_NE(msg.find("expected a number"), std::string::npos) << msg;

  msg = error_of([] { loaded("name = 5\n"); });
  EXPECT_NE(msg.find("expected a string"), std::string::npos) << msg;

  msg = error_of([] { loaded("[train]\nsteps = [1, 2]\n"); });
  EXPECT_NE(msg.find("got an array"), std::string::npos) << msg;

  msg = error_of([] { loaded("[train\nsteps = 1\n"); });
  EXPECT_NE(msg.find("tiny.toml:1"), std::string::npos) << msg;
  EXPECT_NE(msg.find("TOML syntax error"), std::string::npos) << msg;

  msg = error_of([] { Config c; c.add_override("noequals"); });
  EXPECT_NE(msg.find("expected KEY=VALUE"), std::string::npos) << msg;

  msg = error_of([] { Config c; c.load_file("/nonexistent/recipe.toml"); });
  EXPECT_NE(msg.find("/nonexistent/recipe.toml"), std::string::npos) << msg;
}

TEST(Config, EffectiveRecipeIsSortedCompleteAndReloadable) {
  Config c = loaded(kRecipe, {"optim.lr=3e-4", "data.path=/x/\"q\"\\y"});
  const std::string t = c.effective_toml();
  // Root keys first, then tables in sorted order.
  const size_t name = t.find("\nname = \"tiny\""), data = t.find("\n[data]\n"), attn = t.find("\n[model.attn]\n"),
               optim = t.find("\n[optim]\n"), train = t.find("\n[train]\n");
  ASSERT_NE(name, std::string::npos) << t;
  ASSERT_NE(data, std::string::npos) << t;
  EXPECT_LT(name, data);
  EXPECT_LT(data, attn);
  EXPECT_LT(attn, optim);
  EXPECT_LT(optim, train);
  EXPECT_LT(t.find("batch_size = 4"), t.find("compile = false"));
  EXPECT_NE(t.find("lr = 0.0003"), std::string::npos) << t;
  EXPECT_NE(t.find("# peak learning rate"), std::string::npos) << t;
  EXPECT_NE(t.find("weight_decay = 0.0"), std::string::npos) << t;

  // Reloading the effective recipe gives the same values (checkpoint round trip).
  Config again;
  again.load_string(t, "checkpoint/recipe.toml");
  declare_schema(again);
  again.finalize();
  for (const std::string& k : c.keys()) {
    switch (c.type(k)) {
      case Config::Type::kInt: EXPECT_EQ(again.get<int64_t>(k), c.get<int64_t>(k)) << k; break;
      case Config::Type::kDouble: EXPECT_EQ(again.get<double>(k), c.get<double>(k)) << k; break;
      case Config::Type::kBool: EXPECT_EQ(again.get<bool>(k), c.get<bool>(k)) << k; break;
      case Config::Type::kString: EXPECT_EQ(again.get<std::string>(k), c.get<std::string>(k)) << k; break;
    }
  }
  EXPECT_EQ(again.get<std::string>("data.path"), "/x/\"q\"\\y");
}

TEST(Config, DoublesRoundTripExactly) {
  for (double v : {0.1, 1e-7, 6e-4, 3.0, 1e300, 123456.789, -2.5e-10}) {
    Config c;
    c.declare<double>("x", v, "");
    c.finalize();
    Config d;
    d.load_string(c.effective_toml(), "t");
    d.declare<double>("x", 0.0, "");
    d.finalize();
    EXPECT_EQ(d.get<double>("x"), v) << c.effective_toml();
  }
}

TEST(Config, PeekAndSchemaMisuse) {
  Config c;
  c.load_string("recipe = \"gpt-pretrain\"\n[train]\nsteps = 5\n", "r.toml");
  EXPECT_EQ(c.peek<std::string>("recipe"), "gpt-pretrain");
  EXPECT_EQ(c.peek<int64_t>("train.steps"), 5);
  EXPECT_FALSE(c.peek<int64_t>("train.batch_size").has_value());
  EXPECT_NE(error_of([&] { c.declare<int64_t>("train.steps.x", 1, ""); c.declare<int64_t>("train.steps", 1, ""); })
                .find("cannot both exist"),
            std::string::npos);
  EXPECT_NE(error_of([&] { c.get<int64_t>("train.steps"); }).find("before finalize"), std::string::npos);
}

TEST(Metrics, JsonlLinesAreAppendedAndFlushed) {
  const fs::path dir = temp_dir();
  {
    modu::recipes::MetricsWriter w((dir / "run").string());
    w.write({{"step", 1}, {"loss", 3.25}});
    // Visible before the writer closes.
    std::ifstream f(dir / "run" / "metrics.jsonl");
    std::string line;
    ASSERT_TRUE(std::getline(f, line));
    EXPECT_EQ(line, R"({"loss":3.25,"step":1})");
    w.write({{"step", 2}, {"loss", std::nan("")}});
  }
  {
    modu::recipes::MetricsWriter w((dir / "run").string());  // a resumed run appends
    w.write({{"step", 3}});
  }
  std::ifstream f(dir / "run" / "metrics.jsonl");
  std::vector<std::string> lines;
  for (std::string l; std::getline(f, l);) lines.push_back(l);
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_EQ(lines[1], R"({"loss":null,"step":2})");
  EXPECT_EQ(lines[2], R"({"step":3})");
  fs::remove_all(dir);
}

TEST(Metrics, ProgressLine) {
  modu::recipes::Progress p;
  p.step = 12;
  p.total_steps = 1000;
  p.loss = 3.21;
  p.lr = 6e-4;
  p.grad_norm = 1.234;
  p.tokens_per_second = 45100;
  p.mfu = 0.123;
  p.eta_seconds = 200;
  EXPECT_EQ(modu::recipes::format_progress(p),
            "step 12/1000 | loss 3.2100 | lr 6.00e-04 | gnorm 1.23 | 45.1k tok/s | MFU 12.3% | ETA 3m20s");
  modu::recipes::Progress q;
  q.step = 3;
  q.loss = 10.5;
  EXPECT_EQ(modu::recipes::format_progress(q), "step 3 | loss 10.5000");
  EXPECT_EQ(modu::recipes::format_duration(42.4), "42s");
  EXPECT_EQ(modu::recipes::format_duration(7384), "2h03m");
  EXPECT_EQ(modu::recipes::format_duration(3 * 86400 + 3600), "3d01h");
  EXPECT_EQ(modu::recipes::format_si(950), "950");
  EXPECT_EQ(modu::recipes::format_si(1.2e6), "1.20M");
}
