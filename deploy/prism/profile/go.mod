module yuqing/prismprofile

go 1.24

require github.com/apache/beam/sdks/v2 v2.77.0
