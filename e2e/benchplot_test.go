package e2e

import (
	"fmt"
	"os"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// plotLatencies draws, for each offered rate, the latency percentiles
// (p50, p90, p99, p99.9) of every route class measured at that rate: one
// panel per rate, one line per route, milliseconds on a log scale (an
// aggregate that falls apart is 10× or 100× off, not 10%).
func plotLatencies(path string, routes []benchRoute, rates []int) error {
	quantiles := []struct {
		q    float64
		name string
	}{{0.5, "p50"}, {0.9, "p90"}, {0.99, "p99"}, {0.999, "p99.9"}}
	var measured []benchRoute
	for _, r := range routes {
		if len(r.fixed) == len(rates) {
			measured = append(measured, r)
		}
	}
	if len(measured) == 0 {
		return fmt.Errorf("plot: no route was measured at fixed rates")
	}
	ticks := make([]plot.Tick, len(quantiles))
	for i, q := range quantiles {
		ticks[i] = plot.Tick{Value: float64(i), Label: q.name}
	}
	const panelW, panelH = 8 * vg.Inch, 4.5 * vg.Inch
	panels := make([][]*plot.Plot, len(rates))
	for ri, rate := range rates {
		p := plot.New()
		p.Title.Text = fmt.Sprintf("latency at %d req/s offered (open loop)", rate)
		p.Y.Label.Text = "ms (log scale)"
		p.X.Label.Text = "percentile"
		p.Y.Scale = plot.LogScale{}
		p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
		p.X.Tick.Marker = plot.ConstantTicks(ticks)
		p.X.Min, p.X.Max = -0.2, float64(len(quantiles)-1)+0.2
		p.Legend.Top, p.Legend.Left = true, true
		p.Add(plotter.NewGrid())
		for i, r := range measured {
			pts := make(plotter.XYs, len(quantiles))
			for qi, q := range quantiles {
				pts[qi].X = float64(qi)
				pts[qi].Y = max(float64(r.fixed[ri].q(q.q).Microseconds())/1000, 0.01)
			}
			line, points, err := plotter.NewLinePoints(pts)
			if err != nil {
				return err
			}
			line.Color = plotutil.Color(i)
			line.Width = vg.Points(2)
			points.Color = plotutil.Color(i)
			points.Shape = plotutil.Shape(i)
			p.Add(line, points)
			p.Legend.Add(shortClass(r.class), line, points)
		}
		panels[ri] = []*plot.Plot{p}
	}
	img := vgimg.New(panelW, panelH*vg.Length(len(rates)))
	dc := draw.New(img)
	canvases := plot.Align(panels, draw.Tiles{Rows: len(rates), Cols: 1, PadY: vg.Points(12)}, dc)
	for i := range panels {
		panels[i][0].Draw(canvases[i][0])
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// shortClass is a route's label under its bars.
func shortClass(class string) string {
	class = strings.TrimPrefix(class, "api ")
	if i := strings.Index(class, " ("); i > 0 {
		class = class[:i]
	}
	return strings.TrimPrefix(class, "GET ")
}
