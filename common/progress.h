// Progress of long work on stderr, the one implementation the project uses
// (writing a model, quantizing, sending shards): on a terminal its lines are
// redrawn in place a few times a second; in a log, one line every few
// seconds and one at the end. Work split into parts (one per worker) gets a
// line per part under the total. Rates and the ETA are of what is done
// (for shards: delivered, as the workers acknowledge it), since the start.
#pragma once
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

namespace ferry {

class Progress {
public:
    // verb: what the total line says is happening ("sending shards", "synth model.bin").
    explicit Progress(std::string verb, std::vector<std::string> parts = {}, std::FILE* out = stderr);
    // Whether output is redrawn in place (a terminal) or appended (a log).
    bool redraws() const { return tty_; }

    void set_total(size_t part, uint64_t total);
    void update_part(size_t part, uint64_t done);
    // The one-part form: done of total.
    void update(uint64_t done, uint64_t total);
    // A line of its own above the progress ("a:7070: resuming at 12.0 MB").
    void note(const std::string& line);
    // What happens once everything is done but not yet ready ("verifying and loading on the workers").
    void phase(const std::string& text);
    // The final lines, with the time taken.
    void finish();

    // The text of the total line and each part's (for tests and logs).
    std::vector<std::string> lines() const;
    double elapsed_s() const;

private:
    void draw(bool force);

    std::string verb_;
    std::vector<std::string> parts_;
    std::vector<uint64_t> done_, total_;
    std::FILE* out_;
    bool tty_;
    std::string phase_;
    std::chrono::steady_clock::time_point start_, last_draw_;
    size_t drawn_lines_ = 0;  // lines on screen to redraw (terminal)
    bool finished_ = false, drew_ = false, drew_complete_ = false;
};

}  // namespace ferry
