#include "qdqbert/report/svg_chart.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <sstream>

namespace qdqbert::report {
namespace {

constexpr double kFont = 11;        // axis and legend text, px
constexpr double kTitleFont = 14;
constexpr double kCharWidth = 0.58;  // average advance of sans-serif per px of font size (a safe upper side)

double text_width(const std::string& s, double font) {
  size_t chars = 0;  // UTF-8 code points
  for (unsigned char c : s) chars += (c & 0xC0) != 0x80;
  return static_cast<double>(chars) * font * kCharWidth;
}

// Shortens `s` with "…" so that it fits in `max_px`.
std::string fit(const std::string& s, double max_px, double font = kFont) {
  if (text_width(s, font) <= max_px) return s;
  const size_t keep = static_cast<size_t>(std::max(0.0, max_px / (font * kCharWidth) - 1));
  std::string out;
  size_t chars = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if ((c & 0xC0) != 0x80) {
      if (chars == keep) break;
      ++chars;
    }
    out += s[i];
  }
  while (!out.empty() && (static_cast<unsigned char>(out.back()) & 0xC0) == 0xC0) out.pop_back();
  return out + "\xE2\x80\xA6";
}

std::string num(double v) {
  char b[32];
  std::snprintf(b, sizeof(b), "%.2f", v);
  return b;
}

struct Canvas {
  std::ostringstream os;
  Canvas(int w, int h) {
    os << "<svg xmlns='http://www.w3.org/2000/svg' width='" << w << "' height='" << h << "' viewBox='0 0 " << w << ' '
       << h << "' font-family='DejaVu Sans, Arial, sans-serif' font-size='" << kFont << "'>\n"
       << "<rect width='100%' height='100%' fill='white'/>\n";
  }
  void text(double x, double y, const std::string& s, const std::string& anchor = "start", const std::string& extra = "") {
    os << "<text x='" << num(x) << "' y='" << num(y) << "' text-anchor='" << anchor << "'" << extra << '>' << escape(s)
       << "</text>\n";
  }
  void line(double x1, double y1, double x2, double y2, const std::string& stroke, double width = 1,
            const std::string& extra = "") {
    os << "<line x1='" << num(x1) << "' y1='" << num(y1) << "' x2='" << num(x2) << "' y2='" << num(y2) << "' stroke='"
       << stroke << "' stroke-width='" << width << "'" << extra << "/>\n";
  }
  void rect(double x, double y, double w, double h, const std::string& fill) {
    os << "<rect x='" << num(x) << "' y='" << num(y) << "' width='" << num(std::max(0.0, w)) << "' height='"
       << num(std::max(0.0, h)) << "' fill='" << fill << "'/>\n";
  }
  // Title (bold) and subtitle at the top, each shortened to the canvas width.
  void heading(const std::string& title, const std::string& subtitle, int width) {
    text(12, 20, fit(title, width - 24, kTitleFont), "start", " font-size='14' font-weight='bold'");
    if (!subtitle.empty()) text(12, 37, fit(subtitle, width - 24), "start", " fill='#444'");
  }
  std::string done() {
    os << "</svg>\n";
    return os.str();
  }
};

// Maps data values to pixels along one axis.
struct Scale {
  double lo = 0, hi = 1, p0 = 0, p1 = 1;  // data range -> pixel range
  bool log = false;
  double operator()(double v) const {
    const double a = log ? std::log10(lo) : lo, b = log ? std::log10(hi) : hi;
    const double t = ((log ? std::log10(std::max(v, lo)) : v) - a) / (b - a);
    return p0 + (p1 - p0) * std::clamp(t, 0.0, 1.0);
  }
};

Scale make_scale(const Axis& axis, std::vector<double> values, double p0, double p1) {
  Scale s;
  s.log = axis.log;
  s.p0 = p0;
  s.p1 = p1;
  if (axis.min < axis.max) {
    s.lo = axis.min;
    s.hi = axis.max;
  } else {
    if (axis.log) values.erase(std::remove_if(values.begin(), values.end(), [](double v) { return !(v > 0); }), values.end());
    values.erase(std::remove_if(values.begin(), values.end(), [](double v) { return !std::isfinite(v); }), values.end());
    if (values.empty()) values = {axis.log ? 1.0 : 0.0};
    s.lo = *std::min_element(values.begin(), values.end());
    s.hi = *std::max_element(values.begin(), values.end());
    if (axis.log) {
      s.lo = std::pow(10.0, std::floor(std::log10(s.lo)));
      s.hi = std::pow(10.0, std::ceil(std::log10(s.hi)));
    } else {
      const double pad = (s.hi - s.lo) * 0.05;
      s.lo -= pad;
      s.hi += pad;
    }
  }
  if (!(s.hi > s.lo)) {
    const double d = s.log ? s.lo * 9 : std::max(1e-12, std::abs(s.lo) * 0.1 + 1e-12);
    s.hi = s.lo + d;
    if (!s.log) s.lo -= d;
  }
  return s;
}

std::vector<double> ticks_for(const Scale& s) {
  if (!s.log) return nice_ticks(s.lo, s.hi);
  std::vector<double> t;
  const int a = static_cast<int>(std::floor(std::log10(s.lo) + 1e-9)), b = static_cast<int>(std::ceil(std::log10(s.hi) - 1e-9));
  const int step = std::max(1, (b - a + 5) / 6);
  for (int k = a; k <= b; k += step) {
    // Over one or two decades, 2x and 5x ticks too, so the axis has values to read.
    for (double m : b - a <= 2 ? std::vector<double>{1, 2, 5} : std::vector<double>{1}) {
      const double v = m * std::pow(10.0, k);
      if (v >= s.lo * (1 - 1e-9) && v <= s.hi * (1 + 1e-9)) t.push_back(v);
    }
  }
  return t;
}

void axis_x(Canvas& c, const Scale& s, double y, const std::string& label, double cx) {
  c.line(s.p0, y, s.p1, y, "#333");
  for (double t : ticks_for(s)) {
    const double x = s(t);
    c.line(x, y, x, y + 4, "#333");
    c.text(x, y + 16, short_number(t), "middle");
  }
  c.text(cx, y + 32, label, "middle", " fill='#222'");
}

void axis_y(Canvas& c, const Scale& s, double x, const std::string& label, bool right, double grid_to) {
  c.line(x, s.p0, x, s.p1, "#333");
  for (double t : ticks_for(s)) {
    const double y = s(t);
    c.line(x, y, right ? x + 4 : x - 4, y, "#333");
    if (!right) c.line(x, y, grid_to, y, "#e3e3e3", 1);
    c.text(right ? x + 7 : x - 7, y + 4, short_number(t), right ? "start" : "end");
  }
  const double mid = (s.p0 + s.p1) / 2, lx = right ? x + 52 : x - 48;
  c.os << "<text transform='translate(" << num(lx) << ' ' << num(mid) << ") rotate(-90)' text-anchor='middle' fill='#222'>"
       << escape(fit(label, std::abs(s.p0 - s.p1))) << "</text>\n";
}

// Legend swatches (label, colour) from (x, y), wrapped to `width`, rows 16 px apart; returns the rows used.
// With c == nullptr it only counts the rows (for layouts that need the height first).
int legend(Canvas* c, const std::vector<std::pair<std::string, std::string>>& items, double x, double y, double width) {
  double cx = x;
  int rows = 1;
  for (const auto& [label, colour] : items) {
    const std::string l = fit(label, width - 30);
    const double w = 18 + text_width(l, kFont) + 16;
    if (cx > x && cx + w > x + width) {
      cx = x;
      y += 16;
      ++rows;
    }
    if (c) {
      c->rect(cx, y - 9, 12, 10, colour);
      c->text(cx + 16, y, l);
    }
    cx += w;
  }
  return rows;
}

std::vector<std::pair<std::string, std::string>> marker_items(const HistogramPanel& p) {
  std::vector<std::pair<std::string, std::string>> items;
  for (const auto& m : p.markers) items.emplace_back(m.label + " " + short_number(m.x), m.colour);
  return items;
}

}  // namespace

const std::vector<std::string>& palette() {
  static const std::vector<std::string> p = {"#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9", "#000000",
                                             "#8c564b"};
  return p;
}

std::string escape(const std::string& s) {
  std::string o;
  for (char ch : s) {
    switch (ch) {
      case '&': o += "&amp;"; break;
      case '<': o += "&lt;"; break;
      case '>': o += "&gt;"; break;
      case '\'': o += "&apos;"; break;
      case '"': o += "&quot;"; break;
      default: o += ch;
    }
  }
  return o;
}

std::string short_number(double v) {
  if (v == 0) return "0";
  const double a = std::abs(v);
  char b[32];
  if (a >= 1e4 && a < 1e6) {
    std::snprintf(b, sizeof(b), "%gk", v / 1e3);
  } else if (a >= 1e6 && a < 1e9) {
    std::snprintf(b, sizeof(b), "%gM", v / 1e6);
  } else if (a >= 1e9 || a < 1e-3) {
    std::snprintf(b, sizeof(b), "%.0e", v);
  } else {
    std::snprintf(b, sizeof(b), "%.4g", v);
  }
  return b;
}

std::vector<double> nice_ticks(double lo, double hi, int target) {
  if (!(hi > lo) || !std::isfinite(lo) || !std::isfinite(hi)) return {lo};
  const double raw = (hi - lo) / std::max(1, target);
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  double step = mag;
  for (double m : {1.0, 2.0, 2.5, 5.0, 10.0}) {
    step = m * mag;
    if (step >= raw) break;
  }
  std::vector<double> t;
  const double first = std::ceil(lo / step - 1e-9);
  for (int i = 0; i < 1000; ++i) {
    const double v = (first + i) * step;
    if (v > hi + step * 1e-9) break;
    t.push_back(std::abs(v) < step * 1e-9 ? 0.0 : v);
  }
  return t;
}

std::string render(const LineChart& ch) {
  bool has_right = false;
  std::vector<std::pair<std::string, std::string>> items;
  for (const auto& s : ch.series) {
    has_right = has_right || s.right_axis;
    items.emplace_back(s.label + (s.right_axis ? " (right axis)" : ""), s.colour);
  }
  const double left = 72, right = ch.width - (has_right ? 72.0 : 20.0), top = 56, bottom = ch.height - 72.0;
  Canvas c(ch.width, ch.height);
  c.heading(ch.title, ch.subtitle, ch.width);
  std::vector<double> xs, yl, yr;
  for (const auto& s : ch.series) {
    xs.insert(xs.end(), s.x.begin(), s.x.end());
    (s.right_axis ? yr : yl).insert((s.right_axis ? yr : yl).end(), s.y.begin(), s.y.end());
  }
  const Scale sx = make_scale(ch.x, xs, left, right), sy = make_scale(ch.y, yl, bottom, top);
  const Scale sy2 = make_scale(ch.y2, yr, bottom, top);
  axis_y(c, sy, left, ch.y.label, false, right);
  if (has_right) axis_y(c, sy2, right, ch.y2.label, true, right);
  axis_x(c, sx, bottom, ch.x.label, (left + right) / 2);
  for (const auto& s : ch.series) {
    const Scale& y = s.right_axis ? sy2 : sy;
    std::ostringstream d;
    for (size_t i = 0; i < s.x.size() && i < s.y.size(); ++i) {
      if (!std::isfinite(s.y[i]) || (y.log && !(s.y[i] > 0))) continue;
      d << (d.tellp() == 0 ? "M" : "L") << num(sx(s.x[i])) << ' ' << num(y(s.y[i]));
    }
    if (!d.str().empty()) {
      c.os << "<path fill='none' stroke='" << s.colour << "' stroke-width='1.6' d='" << d.str() << "'/>\n";
    }
    if (s.markers) {
      for (size_t i = 0; i < s.x.size() && i < s.y.size(); ++i) {
        if (!std::isfinite(s.y[i])) continue;
        c.os << "<circle cx='" << num(sx(s.x[i])) << "' cy='" << num(y(s.y[i])) << "' r='3' fill='" << s.colour << "'/>\n";
      }
    }
  }
  legend(&c, items, left, ch.height - 16.0, ch.width - left - 12);
  return c.done();
}

std::string render(const BarChart& ch) {
  const double row = 20, top = 64;
  double label_w = 0;
  for (const auto& b : ch.bars) label_w = std::max(label_w, text_width(b.label, kFont));
  label_w = std::min(label_w + 10, ch.width * 0.35);
  const double left = 12 + label_w, right = ch.width - 90.0;
  const double plot_bottom = top + row * static_cast<double>(ch.bars.size());
  const int height = static_cast<int>(plot_bottom + 48 + (ch.legend.empty() ? 0 : 24));
  Canvas c(ch.width, height);
  c.heading(ch.title, ch.subtitle, ch.width);
  std::vector<double> values = {0};
  for (const auto& b : ch.bars) values.push_back(b.value);
  Axis a = ch.value;
  a.log = false;
  Scale s = make_scale(a, values, left, right);
  if (a.min >= a.max) s.lo = std::min(0.0, s.lo);
  for (double t : nice_ticks(s.lo, s.hi)) c.line(s(t), top - 4, s(t), plot_bottom, "#e3e3e3");
  for (size_t i = 0; i < ch.bars.size(); ++i) {
    const auto& b = ch.bars[i];
    const double y = top + row * static_cast<double>(i);
    c.text(left - 6, y + 14, fit(b.label, label_w - 6), "end");
    const double x0 = s(std::max(0.0, s.lo)), x1 = s(b.value);
    c.rect(std::min(x0, x1), y + 4, std::abs(x1 - x0), row - 7, b.colour.empty() ? palette()[0] : b.colour);
    const std::string note = b.annotation.empty() ? short_number(b.value) : b.annotation;
    const double nx = std::max(x0, x1) + 4;
    // Inside the canvas: past the right edge the note goes inside the bar, in white.
    if (nx + text_width(note, kFont) > ch.width - 4) {
      c.text(std::max(x0, x1) - 4, y + 14, note, "end", " fill='white'");
    } else {
      c.text(nx, y + 14, note);
    }
  }
  axis_x(c, s, plot_bottom, ch.value.label, (left + right) / 2);
  if (!ch.legend.empty()) legend(&c, ch.legend, left, height - 10.0, ch.width - left - 12);
  return c.done();
}

std::string render(const HistogramChart& ch) {
  const double left = 72, right = ch.width - 20.0, top = 50, ph = ch.panel_height;
  // Each panel: title (18), plot (ph), x axis (40), its legend rows (16 each), a gap (14).
  std::vector<double> y0s;
  double y = top;
  for (const auto& p : ch.panels) {
    y0s.push_back(y + 18);
    y += 18 + ph + 40 + 16.0 * legend(nullptr, marker_items(p), left, 0, right - left) + 14;
  }
  Canvas c(ch.width, static_cast<int>(y + 6));
  c.heading(ch.title, ch.subtitle, ch.width);
  for (size_t pi = 0; pi < ch.panels.size(); ++pi) {
    const auto& p = ch.panels[pi];
    const double y0 = y0s[pi], y1 = y0 + ph;
    c.text(left, y0 - 6, fit(p.title, right - left), "start", " font-weight='bold'");
    if (p.edges.size() != p.counts.size() + 1 || p.counts.empty()) continue;
    std::vector<double> xs = {p.edges.front(), p.edges.back()};
    for (const auto& m : p.markers) xs.push_back(m.x);
    Axis ax;
    ax.min = std::min(0.0, *std::min_element(xs.begin(), xs.end()));
    ax.max = *std::max_element(xs.begin(), xs.end()) * 1.02;
    const Scale sx = make_scale(ax, {}, left, right);
    Axis ay;
    ay.log = true;
    ay.label = "count (log)";
    double cmax = 10;
    for (double v : p.counts) cmax = std::max(cmax, v);
    ay.min = 1;
    ay.max = std::pow(10.0, std::ceil(std::log10(cmax)));
    const Scale sy = make_scale(ay, {}, y1, y0);
    std::ostringstream d;
    for (size_t k = 0; k < p.counts.size(); ++k) {
      if (!(p.counts[k] > 0)) continue;
      const double xa = sx(p.edges[k]), xb = sx(p.edges[k + 1]), h = y1 - sy(std::max(1.0, p.counts[k]));
      d << 'M' << num(xa) << ' ' << num(y1) << 'v' << num(-std::max(0.8, h)) << 'h' << num(std::max(0.6, xb - xa)) << 'v'
        << num(std::max(0.8, h)) << 'z';
    }
    c.os << "<path fill='#9a9a9a' d='" << d.str() << "'/>\n";
    axis_y(c, sy, left, ay.label, false, left);
    axis_x(c, sx, y1, ch.x_label, (left + right) / 2);
    for (const auto& m : p.markers) c.line(sx(m.x), y0, sx(m.x), y1, m.colour, 1.6, " stroke-opacity='0.85'");
    legend(&c, marker_items(p), left, y1 + 52, right - left);
  }
  return c.done();
}

}  // namespace qdqbert::report
