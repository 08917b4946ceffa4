#pragma once
/// \file
/// Small SVG charts for the study and training reports: every chart has a title that says what to look
/// at, axes with ticks, values and units, a legend for its colours, and labels that are kept inside the
/// canvas (shortened with "…" when they cannot fit). Torch-free; the output renders with any SVG viewer
/// (checked with rsvg-convert).

#include <string>
#include <utility>
#include <vector>

namespace qdqbert::report {

/// The qualitative palette the reports use (colour-blind safe, in order).
const std::vector<std::string>& palette();

struct Axis {
  std::string label;   ///< with its unit, e.g. "optimizer step" or "cosine to FP32"
  bool log = false;    ///< log10 scale (values <= 0 are left out)
  double min = 0, max = 0;  ///< fixed range when min < max; otherwise from the data
};

struct Series {
  std::string label, colour;
  std::vector<double> x, y;
  bool markers = false;  ///< a dot on each point (sparse series such as evaluations)
  bool right_axis = false;  ///< plotted against LineChart::y2
};

struct LineChart {
  std::string title, subtitle;
  Axis x, y, y2;  ///< y2 is drawn when a series has right_axis
  std::vector<Series> series;
  int width = 760, height = 400;
};

struct Bar {
  std::string label;
  double value = 0;
  std::string colour;     ///< empty: the first palette colour
  std::string annotation; ///< printed after the bar (default: the value)
};

/// Horizontal bars, one row each, in the given order.
struct BarChart {
  std::string title, subtitle;
  Axis value;  ///< the bar length axis (label with unit); log is ignored
  std::vector<Bar> bars;
  std::vector<std::pair<std::string, std::string>> legend;  ///< (label, colour)
  int width = 760;
};

struct Marker {
  std::string label, colour;
  double x = 0;
};

/// One histogram (bin edges and counts, counts drawn on a log scale) with vertical markers.
struct HistogramPanel {
  std::string title;
  std::vector<double> edges, counts;  ///< edges.size() == counts.size() + 1
  std::vector<Marker> markers;        ///< listed with their values in the panel's legend
};

struct HistogramChart {
  std::string title, subtitle, x_label;
  std::vector<HistogramPanel> panels;
  int width = 760, panel_height = 190;
};

std::string render(const LineChart& chart);
std::string render(const BarChart& chart);
std::string render(const HistogramChart& chart);

/// "Nice" tick values (1, 2, 5 x 10^k steps) covering [lo, hi], about `target` of them.
std::vector<double> nice_ticks(double lo, double hi, int target = 6);
/// A short label for a tick or value: 0.25, 1.5k, 3e-05.
std::string short_number(double v);
/// Escapes &, <, >, ' and " for SVG text and attributes.
std::string escape(const std::string& text);

}  // namespace qdqbert::report
